#!/usr/bin/env python3
"""CPU per connection of verigated's ClientHello peek: a normal hello in one TLS record
beside a hello padded to ~2.7 KB and sent as one-byte TLS records (issue 9's hostile
client). Each connection sends its whole hello in one write and closes once verigated
has forwarded it to a backend that reads and closes; verigated's CPU time (utime +
stime from /proc) over the run, divided by the connections, is the figure.

Run:  python3 bench/hello/run.py --verigated target/release/verigated [--connections N]
Writes bench/hello/RESULTS.md (the command, the machine, the figures). Never a test:
timings are not asserted anywhere.
"""

import argparse
import os
import platform
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SNI = b"app.example.com"


def client_hello(pad_to):
    """A TLS 1.2 ClientHello handshake message with SNI and a padding extension that
    brings the message to about `pad_to` bytes."""
    sni = struct.pack("!HBH", len(SNI) + 3, 0, len(SNI)) + SNI
    exts = struct.pack("!HH", 0, len(sni)) + sni
    suites = struct.pack("!H", 4) + b"\xc0\x2f\x00\x9c"
    body_head = b"\x03\x03" + os.urandom(32) + b"\x00" + suites + b"\x01\x00"
    base = 4 + len(body_head) + 2 + len(exts)
    pad = max(0, pad_to - base - 4)
    if pad:
        exts += struct.pack("!HH", 21, pad) + b"\x00" * pad
    body = body_head + struct.pack("!H", len(exts)) + exts
    return b"\x01" + struct.pack("!I", len(body))[1:] + body


def records(message, size):
    """`message` cut into TLS handshake records of at most `size` bytes each."""
    out = bytearray()
    for i in range(0, len(message), size):
        chunk = message[i:i + size]
        out += b"\x16\x03\x01" + struct.pack("!H", len(chunk)) + chunk
    return bytes(out)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def backend(listener, seen):
    """Reads what verigated forwards until the client's side closes, then closes."""
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            while conn.recv(65536):
                pass
        seen[0] += 1


def run(port, wire, count, seen):
    start = seen[0]
    for _ in range(count):
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.sendall(wire)
            c.shutdown(socket.SHUT_WR)
            c.recv(1)  # verigated closes once the backend closed
    deadline = time.time() + 30
    while seen[0] - start < count and time.time() < deadline:
        time.sleep(0.01)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--verigated", default=os.path.join(HERE, "../../target/release/verigated"))
    ap.add_argument("--connections", type=int, default=300)
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    args = ap.parse_args()

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    seen = [0]
    threading.Thread(target=backend, args=(listener, seen), daemon=True).start()
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="verigate-hello-bench-")
    # The manifest reads the route's certificate from a file: no probe reaches the backend.
    crt = os.path.join(tmp, "app.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-subj", "/CN=" + SNI.decode(), "-keyout", os.path.join(tmp, "app.key"),
                    "-out", crt, "-days", "1"], check=True, capture_output=True)
    conf = os.path.join(tmp, "verigated.toml")
    with open(conf, "w") as f:
        f.write(f"""[gateway]
listen = ["127.0.0.1:{port}"]
domain = "vm.example.com"
data_dir = "{tmp}/data"
client_hello_timeout = "5s"

[[route]]
sni = "{SNI.decode()}"
backend = "127.0.0.1:{listener.getsockname()[1]}"
certificate = "{crt}"

[attestation]
tee = "none"
tpm = "none"
""")
    proc = subprocess.Popen([args.verigated, "--config", conf], stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(tmp, "log"), "w"))
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.05)
        normal = client_hello(512)
        padded = client_hello(2700)
        cases = [
            ("normal hello, one record", records(normal, 16384), len(normal)),
            ("hello padded to ~2.7 KB, one record", records(padded, 16384), len(padded)),
            ("hello padded to ~2.7 KB, one-byte records", records(padded, 1), len(padded)),
        ]
        rows = []
        for name, wire, size in cases:
            run(port, wire, 20, seen)  # warm up
            before = cpu_seconds(proc.pid)
            run(port, wire, args.connections, seen)
            spent = cpu_seconds(proc.pid) - before
            ms = spent * 1000 / args.connections
            rows.append((name, size, len(wire), ms))
            print(f"{name}: {ms:.3f} ms CPU per connection", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)
    cmd = "python3 bench/hello/run.py " + " ".join(sys.argv[1:])
    lines = [
        "# ClientHello peek: CPU per connection (issue 9)",
        "",
        f"Command: `{cmd}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}; "
        f"verigated: `{args.verigated}`; {args.connections} connections per case "
        "(after 20 to warm up), one at a time; CPU = verigated's utime + stime from /proc, "
        "which includes accept, the backend connect and the forwarding of the hello.",
        "",
        "| hello | message bytes | bytes on the wire | verigated CPU per connection |",
        "|---|---|---|---|",
    ]
    for name, size, wire, ms in rows:
        lines.append(f"| {name} | {size} | {wire} | {ms:.3f} ms |")
    lines += ["", "Target: the one-byte-record hello under 5 ms of CPU per connection."]
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
