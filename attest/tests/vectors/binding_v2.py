#!/usr/bin/env python3
"""Test vectors for verigate's report-data binding, version 2 (batched nonces), computed
from ARCHITECTURE.md ("Binding", "Version 2") with hashlib only, independently of the Rust
code. The tree is RFC 6962's (section 2.1): MTH and PATH are written from its text.
Writes binding_v2.json beside this file.

    leaf(nonce)    = SHA-256(0x00 || nonce)
    node(l, r)     = SHA-256(0x01 || l || r)
    report_data    = SHA-512("verigate attestation v2" || 0x00 || root || manifest_digest || ak_digest)
    tpm_qualifying = SHA-256(report_data)
"""
import hashlib
import json
import os

def sha256(b):
    return hashlib.sha256(b).digest()

def leaf(nonce):
    return sha256(b"\x00" + nonce)

def node(l, r):
    return sha256(b"\x01" + l + r)

def k_of(n):
    # the largest power of two smaller than n
    k = 1
    while k * 2 < n:
        k *= 2
    return k

def mth(leaves):
    if len(leaves) == 1:
        return leaves[0]
    k = k_of(len(leaves))
    return node(mth(leaves[:k]), mth(leaves[k:]))

def path(m, leaves):
    if len(leaves) <= 1:
        return []
    k = k_of(len(leaves))
    if m < k:
        return path(m, leaves[:k]) + [mth(leaves[k:])]
    return path(m - k, leaves[k:]) + [mth(leaves[:k])]

def manifest_digest(certs):
    entries = sorted(((n.lower().encode(), sha256(der)) for n, der in certs), key=lambda e: e[0])
    return sha256(b"".join(len(n).to_bytes(2, "big") + n + d for n, d in entries))

def case(label, size, certs, ak):
    nonces = [hashlib.sha256(b"nonce %d" % i).digest() for i in range(size)]
    leaves = [leaf(n) for n in nonces]
    root = mth(leaves)
    md = manifest_digest(certs)
    akd = sha256(ak) if ak is not None else bytes(32)
    rd = hashlib.sha512(b"verigate attestation v2" + b"\x00" + root + md + akd).digest()
    return {
        "label": label,
        "nonces": [n.hex() for n in nonces],
        "leaves": [l.hex() for l in leaves],
        "paths": [[p.hex() for p in path(i, leaves)] for i in range(size)],
        "root": root.hex(),
        "manifest_digest": md.hex(),
        "ak_digest": akd.hex(),
        "report_data": rd.hex(),
        "tpm_qualifying": sha256(rd).hex(),
    }

ak = bytes.fromhex("0023000b00050472000000100018000b00030010") + bytes(range(64))
vm = [("vm.example.com", b"leaf-vm")]
cases = [
    case("a lone caller: the root is its leaf", 1, vm, None),
    case("two callers", 2, vm, ak),
    case("three callers (an unbalanced tree)", 3, vm, ak),
    case("five callers, two names", 5, vm + [("a.example.com", b"leaf-a")], ak),
    case("eight callers (a full tree)", 8, vm, None),
    case("thirteen callers", 13, vm, ak),
]

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "binding_v2.json")
with open(out, "w") as f:
    json.dump(cases, f, indent=2)
    f.write("\n")
