#!/usr/bin/env python3
"""Independent reference for attest's IMA tests: replays an ASCII IMA log (template
ima-ng) into a PCR bank and recomputes every template hash from its template data.

Written from the kernel's template format (security/integrity/ima/ima_template_lib.c):
template data = for each field, u32 little-endian length || field bytes, with
d-ng = b"<alg>:" + NUL + digest and n-ng = path + NUL. The SHA-1 bank extends the
logged template hash; other banks extend the bank's hash of the template data.

usage: ima_replay.py LOG [sha1|sha256|sha384|sha512]
"""
import hashlib
import struct
import sys


def template_data(alg_digest, path):
    alg, hexdigest = alg_digest.split(":", 1)
    d_ng = alg.encode() + b":\0" + bytes.fromhex(hexdigest)
    n_ng = path.encode() + b"\0"
    out = b""
    for field in (d_ng, n_ng):
        out += struct.pack("<I", len(field)) + field
    return out


def main():
    log = sys.argv[1]
    bank = sys.argv[2] if len(sys.argv) > 2 else "sha1"
    size = hashlib.new(bank).digest_size
    pcr = bytes(size)
    bad = 0
    with open(log, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            pcr_index, template_hash, name, rest = line.split(" ", 3)
            assert name == "ima-ng" and pcr_index.strip() == "10", line
            alg_digest, path = rest.split(" ", 1)
            data = template_data(alg_digest, path)
            logged = bytes.fromhex(template_hash)
            if logged == bytes(20):
                value = b"\xff" * size
            else:
                if hashlib.sha1(data).digest() != logged:
                    bad += 1
                    print(f"line {number}: template hash does not recompute", file=sys.stderr)
                value = logged if bank == "sha1" else hashlib.new(bank, data).digest()
            pcr = hashlib.new(bank, pcr + value).digest()
    print(pcr.hex())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
