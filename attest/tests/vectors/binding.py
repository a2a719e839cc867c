#!/usr/bin/env python3
"""Test vectors for verigate's report-data binding, computed from ARCHITECTURE.md
("Binding") with hashlib only (independently of the Rust code). Writes binding.json beside
this file. The leaves are real certificates in certs/ (made once with openssl: vm-1 and
vm-2 share a key, as a renewal with --reuse-key does); the SubjectPublicKeyInfo is found
by the small DER walk below.

    entry           = u16_be(len(name)) || name (lowercase ASCII) || sha256(leaf DER)
                      || sha256(leaf's SubjectPublicKeyInfo DER)
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

def tlv(b, i):
    """One DER element at offset i: (start of the whole element, start of content, end)."""
    start = i
    i += 1  # tag (X.509's fields all have one-byte tags)
    n = b[i]
    i += 1
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(b[i:i + k], "big")
        i += k
    return start, i, i + n

def spki(der):
    """Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serial,
    signature, issuer, validity, subject, subjectPublicKeyInfo, ... }, ... }"""
    _, cert, _ = tlv(der, 0)
    _, i, _ = tlv(der, cert)  # into tbsCertificate
    if der[i] == 0xA0:  # explicit version
        i = tlv(der, i)[2]
    for _ in range(5):  # serial, signature, issuer, validity, subject
        i = tlv(der, i)[2]
    start, _, end = tlv(der, i)
    return der[start:end]

def leaf(name):
    with open(os.path.join(HERE, "certs", name + ".der"), "rb") as f:
        return f.read()

HERE = os.path.dirname(os.path.abspath(__file__))

def case(label, nonce, certs, ak):
    # certs: list of (name as given, leaf DER bytes); names are lowercased first.
    entries = sorted(((n.lower().encode(), sha256(der), sha256(spki(der))) for n, der in certs),
                     key=lambda e: e[0])
    blob = b"".join(len(n).to_bytes(2, "big") + n + d + k for n, d, k in entries)
    manifest_digest = sha256(blob)
    ak_digest = sha256(ak) if ak is not None else bytes(32)
    report_data = hashlib.sha512(b"verigate attestation v1" + b"\x00" + nonce + manifest_digest + ak_digest).digest()
    return {
        "label": label,
        "nonce": nonce.hex(),
        "certs": [{"name": n, "der": der.hex()} for n, der in certs],
        "ak_public": ak.hex() if ak is not None else None,
        "manifest": [{"name": n.decode(), "cert_sha256": d.hex(), "spki_sha256": k.hex()}
                     for n, d, k in entries],
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
    case("one entry, no TPM", nonce_a, [("vm.example.com", leaf("vm-1"))], None),
    case("the same entry renewed with the same key, no TPM", nonce_a,
         [("vm.example.com", leaf("vm-2"))], None),
    case("three entries given unsorted, with AK", nonce_b,
         [("c.example.com", leaf("c")), ("a.example.com", leaf("a")), ("b.example.com", leaf("b"))], ak),
    case("mixed-case and wildcard names, with AK", nonce_a,
         [("VM.Example.COM", leaf("vm-1")), ("*.apps.example.com", leaf("wild")), ("a.example.com", leaf("a"))], ak),
]

out = os.path.join(HERE, "binding.json")
with open(out, "w") as f:
    json.dump(cases, f, indent=2)
    f.write("\n")
