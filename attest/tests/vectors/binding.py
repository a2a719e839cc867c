#!/usr/bin/env python3
"""Test vectors for verigate's report-data binding, computed from ARCHITECTURE.md
("Binding") with hashlib only (independently of the Rust code). Writes binding.json beside
this file.

    entry           = u16_be(len(name)) || name (lowercase ASCII) || sha256(leaf DER)
    manifest_digest = SHA-256(entries sorted by name bytes, concatenated)
    ak_digest       = SHA-256(TPMT_PUBLIC), or 32 zero bytes without a TPM
    report_data     = SHA-512("verigate attestation v1" || 0x00 || nonce || manifest_digest || ak_digest)
    tpm_qualifying  = SHA-256(report_data)
"""
import hashlib
import json
import os

def sha256(b):
    return hashlib.sha256(b).digest()

def case(label, nonce, certs, ak):
    # certs: list of (name as given, leaf DER bytes); names are lowercased first.
    entries = sorted(((n.lower().encode(), sha256(der)) for n, der in certs), key=lambda e: e[0])
    blob = b"".join(len(n).to_bytes(2, "big") + n + d for n, d in entries)
    manifest_digest = sha256(blob)
    ak_digest = sha256(ak) if ak is not None else bytes(32)
    report_data = hashlib.sha512(b"verigate attestation v1" + b"\x00" + nonce + manifest_digest + ak_digest).digest()
    return {
        "label": label,
        "nonce": nonce.hex(),
        "certs": [{"name": n, "der": der.hex()} for n, der in certs],
        "ak_public": ak.hex() if ak is not None else None,
        "manifest": [{"name": n.decode(), "cert_sha256": d.hex()} for n, d in entries],
        "manifest_digest": manifest_digest.hex(),
        "ak_digest": ak_digest.hex(),
        "report_data": report_data.hex(),
        "tpm_qualifying": sha256(report_data).hex(),
    }

nonce_a = bytes(range(32))
nonce_b = bytes([0xff] * 32)
ak = bytes.fromhex("0023000b00050472000000100018000b00030010") + bytes(range(64))
cases = [
    case("empty manifest, no TPM", nonce_a, [], None),
    case("one entry, no TPM", nonce_a, [("vm.example.com", b"leaf-vm")], None),
    case("three entries given unsorted, with AK", nonce_b,
         [("c.example.com", b"leaf-c"), ("a.example.com", b"leaf-a"), ("b.example.com", b"leaf-b")], ak),
    case("mixed-case and wildcard names, with AK", nonce_a,
         [("VM.Example.COM", b"leaf-vm"), ("*.apps.example.com", b"leaf-wild"), ("a.example.com", b"leaf-a")], ak),
]

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "binding.json")
with open(out, "w") as f:
    json.dump(cases, f, indent=2)
    f.write("\n")
