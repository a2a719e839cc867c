#!/usr/bin/env python3
"""Generate a tree shaped like a distribution's root for the snapshot memory benchmark:
many files of which few are code. Most files are small data files (mode 0644, no
library name, no `#!` or ELF header: the scan must read their first bytes to know), a
few percent are code (exec bit, `*.so.N` names, `#!` scripts without exec bit), in
nested directories with paths about as long as under /usr. Deterministic (seeded).

usage: gen_root_like.py DIR [FILES] [CODE_FILES] [SEED]
prints: "<files> files, <code> code files, <bytes> bytes of code"
"""
import os
import random
import sys


def main():
    root = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 360000
    code = int(sys.argv[3]) if len(sys.argv) > 3 else 8300
    rng = random.Random(int(sys.argv[4]) if len(sys.argv) > 4 else 1)
    pool = rng.randbytes(1 << 20)
    code_every = max(1, count // code)
    code_made = 0
    code_bytes = 0
    for i in range(count):
        # 3 levels, ~40 files a directory, as under /usr/share.
        d = os.path.join(root, "share-%03d" % (i % 97), "package-%04d" % (i // 40 % 9000),
                         "doc" if i % 3 else "lib")
        os.makedirs(d, exist_ok=True)
        if i % code_every == 0 and code_made < code:
            kind = code_made % 10
            size = rng.randint(4 << 10, 96 << 10)
            start = rng.randint(0, len(pool) - size)
            body = pool[start:start + size]
            if kind < 7:
                name, mode, data = "tool-%07d" % i, 0o755, b"\x00bin" + body
            elif kind < 9:
                name, mode, data = "libthing-%07d.so.1" % i, 0o644, b"\x00lib" + body
            else:
                name, mode, data = "script-%07d" % i, 0o644, b"#!/bin/sh\n# " + body
            code_made += 1
            code_bytes += len(data)
        else:
            name, mode = "file-%07d.txt" % i, 0o644
            data = b"plain data %d\n" % i + pool[i % 4096:i % 4096 + rng.randint(0, 200)]
        p = os.path.join(d, name)
        with open(p, "wb") as f:
            f.write(data)
        os.chmod(p, mode)
    print("%d files, %d code files, %d bytes of code" % (count, code_made, code_bytes))


if __name__ == "__main__":
    main()
