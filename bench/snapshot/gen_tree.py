#!/usr/bin/env python3
"""Generate the snapshot benchmark tree: many files of mixed sizes, all of a kind the
IMA policy measures (exec bit, ELF shared object, *.so.N name, #! script), so that the
scan and `find | xargs sha256sum` hash exactly the same bytes. Deterministic (seeded).

usage: gen_tree.py DIR [FILES] [SEED]
"""
import os
import random
import struct
import sys

def main():
    root = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    pool = rng.randbytes(32 << 20)
    elf = b"\x7fELF\x02\x01\x01" + b"\x00" * 9 + struct.pack("<H", 3) + b"\x3e\x00"
    total = 0
    for i in range(count):
        r = rng.random()
        if r < 0.005:
            size = rng.randint(1 << 20, 8 << 20)      # a few large libraries
        elif r < 0.10:
            size = rng.randint(64 << 10, 512 << 10)   # medium binaries
        else:
            size = rng.randint(1 << 10, 64 << 10)     # most files are small
        kind = i % 20
        d = os.path.join(root, "d%03d" % (i % 200), "s%d" % (i % 7))
        os.makedirs(d, exist_ok=True)
        off = rng.randint(0, len(pool) - size)
        body = b"%08d" % i + pool[off:off + size]
        if kind == 0:
            name, mode, body = "lib%05d.so.%d" % (i, i % 5), 0o644, body
        elif kind == 1:
            name, mode, body = "mod%05d" % i, 0o644, elf + body
        elif kind == 2:
            name, mode, body = "script%05d" % i, 0o644, b"#!/bin/sh\n" + body
        else:
            name, mode = "bin%05d" % i, 0o755
        path = os.path.join(d, name)
        with open(path, "wb") as f:
            f.write(body)
        os.chmod(path, mode)
        total += len(body)
    print("%d files, %d bytes" % (count, total))

if __name__ == "__main__":
    main()
