#!/usr/bin/env python3
"""verigated against HAProxy 2.6 and nginx stream on loopback: SNI passthrough cost.

Starts one TLS backend (nginx: a large file and a small response), then, one at a time,
each proxy in front of it (verigated; HAProxy `mode tcp` with and without splice; nginx
`stream` + `ssl_preread`; and no proxy at all), and measures:

  cpu_per_gib   proxy CPU seconds (utime+stime from /proc/PID/stat, all its processes)
                per GiB forwarded while curl downloads the large file
  cpu_per_conn  proxy CPU microseconds per new TLS connection (one request each)
  latency       connect+TLS handshake time seen by the client, p50/p99, minus direct
  idle_mem      proxy RSS growth per idle TLS connection (handshake done, then quiet)

Everything listens on 127.0.0.0/8 on free ports, in a temporary directory; every process
started here is killed by PID on exit (normal, error or signal). Counts and durations
are bounded (see the constants and the --quick flag). Writes bench/RESULTS.md.

Run through bench/run.sh, which raises the open-files limit and builds verigated.
"""

import argparse
import asyncio
import atexit
import ctypes
import datetime
import json
import os
import platform
import random
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SNI = "app.bench.test"
GW_DOMAIN = "gw.bench.test"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

# Client source addresses, so that ~9000 connections per run and the TIME_WAIT of the
# previous runs never exhaust the ephemeral ports of one address.
SOURCES = [f"127.0.0.{i}" for i in range(2, 18)]

STARTED = []  # Popen objects, killed by PID at exit


def kill_started():
    for p in reversed(STARTED):
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.time() + 5
    for p in reversed(STARTED):
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
    STARTED.clear()


atexit.register(kill_started)


def on_signal(signum, _frame):
    kill_started()
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent():
    # PR_SET_PDEATHSIG = 1: a child gets SIGTERM if this script dies without cleaning up
    # (even SIGKILL), so no proxy or backend outlives the run.
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def start(cmd, log, **kw):
    out = open(log, "ab")
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         preexec_fn=die_with_parent, **kw)
    STARTED.append(p)
    return p


def stop(p):
    if p.poll() is None:
        os.kill(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
    if p in STARTED:
        STARTED.remove(p)


def wait_port(port, proc, what, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout}s")


def process_tree(pid):
    """pid and all its descendants (nginx master + workers)."""
    pids = [pid]
    i = 0
    while i < len(pids):
        try:
            for t in os.listdir(f"/proc/{pids[i]}/task"):
                with open(f"/proc/{pids[i]}/task/{t}/children") as f:
                    pids.extend(int(c) for c in f.read().split())
        except OSError:
            pass
        i += 1
    return sorted(set(pids))


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[0] is field 3 (state): utime is field 14, stime field 15.
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def rss_bytes(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * PAGE
        except OSError:
            continue
    return total


def client_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # The backend certificate is self-signed: the client checks nothing, it only loads.
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# ---------------------------------------------------------------- configurations


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def make_certificate(tmp):
    key, crt = f"{tmp}/backend.key", f"{tmp}/backend.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", key, "-out", crt, "-days", "2", "-subj", f"/CN={SNI}",
         "-addext", f"subjectAltName=DNS:{SNI}"],
        check=True, capture_output=True)
    return key, crt


def backend_conf(tmp, port, key, crt):
    return f"""# TLS backend shared by every path: nginx serving a large file and a small response.
worker_processes auto;
pid {tmp}/backend.pid;
error_log {tmp}/backend.err warn;
daemon off;
events {{ worker_connections 20000; }}
http {{
    access_log off;
    client_header_timeout 600s;   # idle TLS connections must stay open during the RSS test
    keepalive_timeout 600s;
    server {{
        listen 127.0.0.1:{port} ssl backlog=4096;
        server_name {SNI};
        ssl_certificate {crt};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        root {tmp}/www;
        location = /small {{ return 200 "ok\\n"; }}
    }}
}}
"""


def haproxy_conf(tmp, port, backend_port, splice):
    splice_line = "option splice-auto" if splice else "no option splice-auto\n    no option splice-request\n    no option splice-response"
    return f"""# HAProxy 2.6 SNI passthrough ({'splice-auto' if splice else 'no splice'}).
# One log line per connection (option tcplog), as verigated writes one.
global
    log stdout format raw local0 info
defaults
    mode tcp
    log global
    option tcplog
    timeout connect 5s
    timeout client 10m
    timeout server 10m
frontend tls
    bind 127.0.0.1:{port}
    {splice_line}
    tcp-request inspect-delay 5s
    tcp-request content accept if {{ req.ssl_hello_type 1 }}
    use_backend app if {{ req.ssl_sni -i {SNI} }}
backend app
    {splice_line}
    server b1 127.0.0.1:{backend_port}
"""


def nginx_stream_conf(tmp, port, backend_port):
    return f"""# nginx stream SNI passthrough with ssl_preread; one log line per connection, as
# verigated writes one.
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes auto;
pid {tmp}/nginx-stream.pid;
error_log {tmp}/nginx-stream.err warn;
daemon off;
events {{ worker_connections 20000; }}
stream {{
    log_format conn '$remote_addr [$time_local] $ssl_preread_server_name $upstream_addr '
                    '$status $bytes_received $bytes_sent $session_time';
    access_log {tmp}/nginx-stream-access.log conn;
    map $ssl_preread_server_name $app {{
        {SNI} 127.0.0.1:{backend_port};
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        ssl_preread on;
        proxy_pass $app;
        proxy_timeout 10m;
    }}
}}
"""


def verigated_conf(tmp, port, backend_port, crt, splice=True):
    return f"""# verigated SNI passthrough: one route, no TEE/TPM (the bench measures forwarding).
[gateway]
listen = ["127.0.0.1:{port}"]
domain = "{GW_DOMAIN}"
data_dir = "{tmp}/verigated"
client_hello_timeout = "5s"
max_connections = 20000
# The idle test opens ~470 connections from each of its 16 source addresses; the
# default share of one source (256) would refuse the rest, and the peers have no such cap.
max_connections_per_source = 20000
splice = {"true" if splice else "false"}

[[route]]
sni = "{SNI}"
backend = "127.0.0.1:{backend_port}"
certificate = "{crt}"

[attestation]
tee = "none"
tpm = "none"
"""


# ---------------------------------------------------------------- load


def bulk(port, url_path, repeats):
    """curl downloads the large file `repeats` times; returns bytes received."""
    total = 0
    for _ in range(repeats):
        out = subprocess.run(
            ["curl", "-fsS", "-k", "--http1.1", "--max-time", "120", "-o", "/dev/null",
             "-w", "%{size_download}", "--resolve", f"{SNI}:{port}:127.0.0.1",
             f"https://{SNI}:{port}{url_path}"],
            # curl's own limit bounds each download.
            check=True, capture_output=True, text=True)
        total += int(out.stdout.strip())
    return total


def many_streams(port, url_path, streams):
    """`streams` curl downloads of the large file at once; returns bytes received."""
    procs = [subprocess.Popen(
        ["curl", "-fsS", "-k", "--http1.1", "--max-time", "300", "-o", "/dev/null",
         "-w", "%{size_download}", "--resolve", f"{SNI}:{port}:127.0.0.1",
         f"https://{SNI}:{port}{url_path}"],
        stdout=subprocess.PIPE, text=True) for _ in range(streams)]
    total = 0
    for p in procs:
        out, _ = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"a concurrent download failed (curl exit {p.returncode})")
        total += int(out.strip())
    return total


def new_connections(ports, count):
    """`count` sequential connections to each port, taking the ports in turn (so that a
    proxy and the direct path are timed over the same seconds), each: connect, TLS
    handshake, GET /small, close. Returns, per port, the connect+handshake durations in
    microseconds."""
    ctx = client_context()
    durations = {port: [] for port in ports}
    request = f"GET /small HTTP/1.1\r\nHost: {SNI}\r\nConnection: close\r\n\r\n".encode()
    for i in range(count):
        for port in ports:
            src = SOURCES[i % len(SOURCES)]
            t0 = time.perf_counter_ns()
            raw = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(src, 0))
            tls = ctx.wrap_socket(raw, server_hostname=SNI)
            t1 = time.perf_counter_ns()
            tls.sendall(request)
            reply = b""
            while True:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                reply += chunk
            tls.close()
            if not reply.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"connection {i} to {port}: unexpected reply {reply[:40]!r}")
            durations[port].append((t1 - t0) / 1000)
    return durations


def added_latency(proxy, direct, p, rounds=200):
    """p-th percentile of proxy minus that of direct, with a 95% bootstrap interval."""
    rng = random.Random(1)
    point = percentile(proxy, p) - percentile(direct, p)
    diffs = sorted(
        percentile(rng.choices(proxy, k=len(proxy)), p) - percentile(rng.choices(direct, k=len(direct)), p)
        for _ in range(rounds))
    return point, diffs[int(0.025 * rounds)], diffs[int(0.975 * rounds) - 1]


async def open_idle(port, count, concurrency=64):
    ctx = client_context()
    sem = asyncio.Semaphore(concurrency)
    conns = []
    # After the first failure (a proxy at its connection or descriptor limit), the rest
    # are not attempted: the number opened is the answer, and waiting out timeouts is not.
    failed = asyncio.Event()

    async def one(i):
        async with sem:
            if failed.is_set():
                return
            try:
                r, w = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=SNI,
                                            local_addr=(SOURCES[i % len(SOURCES)], 0)),
                    timeout=10)
            except BaseException:
                failed.set()
                raise
            conns.append((r, w))

    results = await asyncio.gather(*(one(i) for i in range(count)), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    return conns, errors


def idle_memory(port, pids_of, count, settle):
    """Opens `count` TLS connections that finish their handshake and stay quiet; returns
    (RSS growth in bytes, connections opened, first error)."""
    loop = asyncio.new_event_loop()
    try:
        time.sleep(settle)
        before = rss_bytes(pids_of())
        conns, errors = loop.run_until_complete(open_idle(port, count))
        time.sleep(settle)
        after = rss_bytes(pids_of())
        for _, w in conns:
            w.transport.abort()
        loop.run_until_complete(asyncio.sleep(0.2))
    finally:
        loop.close()
    return after - before, len(conns), (repr(errors[0]) if errors else None)


def percentile(values, p):
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


# ---------------------------------------------------------------- the run


def measure(name, port, direct_port, pids_of, args, log):
    res = {"name": name}
    is_proxy = port != direct_port
    # Warm-up: a few connections and one download, so that lazy allocations are done.
    new_connections([port], 20)
    bulk(port, "/small", 1)

    def timed(download):
        """Bytes, wall seconds and proxy CPU-seconds of one download phase."""
        c0 = cpu_seconds(pids_of())
        t0 = time.time()
        nbytes = download()
        wall = time.time() - t0
        return nbytes, wall, cpu_seconds(pids_of()) - c0

    nbytes, wall, cpu = timed(lambda: bulk(port, "/large", args.bulk_repeats))
    res["bulk_bytes"] = nbytes
    res["bulk_wall"] = wall
    res["cpu_per_gib"] = cpu / (nbytes / 2**30) if is_proxy else None
    log(f"{name}: bulk {nbytes / 2**30:.2f} GiB in {wall:.1f}s, proxy CPU {cpu:.2f}s")

    if is_proxy and args.streams > 1:
        nbytes, wall, cpu = timed(lambda: many_streams(port, "/large", args.streams))
        res["many_bytes"] = nbytes
        res["many_wall"] = wall
        res["many_cpu_per_gib"] = cpu / (nbytes / 2**30)
        log(f"{name}: {args.streams} streams at once, {nbytes / 2**30:.2f} GiB in {wall:.1f}s, "
            f"proxy CPU {cpu:.2f}s")

    ports = [port, direct_port] if is_proxy else [port]
    c0 = cpu_seconds(pids_of())
    durations = new_connections(ports, args.connections)
    c1 = cpu_seconds(pids_of())
    mine = durations[port]
    res["cpu_per_conn_us"] = (c1 - c0) / args.connections * 1e6 if is_proxy else None
    res["p50_us"] = percentile(mine, 50)
    res["p99_us"] = percentile(mine, 99)
    if is_proxy:
        res["added_p50"] = added_latency(mine, durations[direct_port], 50)
        res["added_p99"] = added_latency(mine, durations[direct_port], 99)
        log(f"{name}: {args.connections} connections (interleaved with as many direct ones), "
            f"proxy CPU {c1 - c0:.2f}s, handshake p50 {res['p50_us']:.0f}us p99 {res['p99_us']:.0f}us, "
            f"added p50 {res['added_p50'][0]:.0f}us p99 {res['added_p99'][0]:.0f}us")
        growth, opened, err = idle_memory(port, pids_of, args.idle, args.settle)
        res["idle_opened"] = opened
        res["idle_error"] = err
        res["idle_bytes_per_conn"] = growth / opened if opened else float("nan")
        log(f"{name}: {opened}/{args.idle} idle connections, RSS +{growth / 2**20:.1f} MiB"
            + (f", first error {err}" if err else ""))
    else:
        log(f"{name}: {args.connections} connections, handshake p50 {res['p50_us']:.0f}us "
            f"p99 {res['p99_us']:.0f}us")
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--verigated", default=os.path.join(ROOT, "target/release/verigated"),
                    help="verigated binary (default: target/release/verigated)")
    ap.add_argument("--large-mib", type=int, default=1024, help="size of the large file (1024)")
    ap.add_argument("--bulk-repeats", type=int, default=2, help="downloads of the large file per proxy (2)")
    ap.add_argument("--streams", type=int, default=4,
                    help="concurrent downloads of the large file for the many-streams figure (4)")
    ap.add_argument("--connections", type=int, default=5000, help="new TLS connections per proxy (5000)")
    ap.add_argument("--idle", type=int, default=7500,
                    help="idle TLS connections per proxy (7500: with the hard open-files limit of 20000 "
                         "here, HAProxy with splice reserves descriptors for pipes and accepts ~8000)")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds before reading RSS (2)")
    ap.add_argument("--only", default="", help="comma-separated subset of paths to run, in that order")
    ap.add_argument("--quick", action="store_true", help="small counts, for checking the script")
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--render", action="store_true",
                    help="only re-write RESULTS.md from RESULTS.json beside it (the last run's numbers)")
    args = ap.parse_args()
    if args.quick:
        args.large_mib, args.bulk_repeats, args.connections, args.idle = 64, 1, 200, 300

    if args.render:
        # Re-render RESULTS.md (e.g. after editing discussion.md) from the last run's numbers.
        with open(os.path.splitext(args.out)[0] + ".json") as f:
            saved = json.load(f)
        saved_args = argparse.Namespace(**saved["meta"]["args"])
        saved_args.out = args.out
        report(saved_args, saved["meta"], saved["results"], saved["configs"],
               saved["verigated_missing"], saved["lines"])
        return
    started_at = datetime.datetime.now(datetime.timezone.utc)
    with open("/proc/loadavg") as f:
        load_at_start = " ".join(f.read().split()[:3])
    tmp = tempfile.mkdtemp(prefix="verigate-bench-")
    lines = []

    t_start = time.time()

    def log(msg):
        msg = f"[{time.time() - t_start:6.1f}s] {msg}"
        print(msg, flush=True)
        lines.append(msg)

    try:
        # nginx workers run as an unprivileged user: they must reach the served file.
        os.chmod(tmp, 0o755)
        os.makedirs(f"{tmp}/www")
        os.makedirs(f"{tmp}/verigated")
        # A sparse file: read from the page cache, encrypted by TLS all the same.
        with open(f"{tmp}/www/large", "wb") as f:
            f.truncate(args.large_mib * 2**20)
        os.chmod(f"{tmp}/www/large", 0o644)
        key, crt = make_certificate(tmp)
        bport = free_port()
        backend = start(["nginx", "-c", write(f"{tmp}/backend.conf", backend_conf(tmp, bport, key, crt)),
                         "-p", tmp], f"{tmp}/backend.log")
        wait_port(bport, backend, "backend nginx")
        # One direct download first, so the file is in the page cache before any path is
        # timed: otherwise the first path measured pays for reading it (2-4x its wall time
        # in the runs of 2026-12-07, whichever proxy came first).
        bulk(bport, "/large", 1)

        paths = []
        verigated_missing = None
        if os.path.exists(args.verigated):
            # verigated as shipped (logs one line per connection at info, splice on), as
            # HAProxy (option tcplog) and nginx (access_log) do here; with RUST_LOG=warn,
            # no line per connection; and with `splice = false` (its portable copy loop).
            paths += ["verigated", "verigated-quiet", "verigated-nosplice"]
        else:
            verigated_missing = f"{args.verigated} not found"
        paths += ["haproxy-splice", "haproxy-nosplice", "nginx-stream", "direct"]
        if args.only:
            # In the order given: on a shared machine, swapping the order between runs
            # shows how much of a difference is the load of the moment.
            paths = [p for p in args.only.split(",") if p in paths]

        results = {}
        configs = {}
        for name in paths:
            port = free_port()
            proc = None
            env = None
            if name == "direct":
                port = bport
                configs[name] = ("(none)", "client connects to the backend directly")
            elif name.startswith("haproxy"):
                conf = haproxy_conf(tmp, port, bport, splice=(name == "haproxy-splice"))
                path = write(f"{tmp}/{name}.cfg", conf)
                cmd = ["haproxy", "-db", "-f", path]
                configs[name] = (" ".join(cmd), conf)
            elif name == "nginx-stream":
                conf = nginx_stream_conf(tmp, port, bport)
                path = write(f"{tmp}/nginx-stream.conf", conf)
                cmd = ["nginx", "-c", path, "-p", tmp]
                configs[name] = (" ".join(cmd), conf)
            else:
                conf = verigated_conf(tmp, port, bport, crt, splice=(name != "verigated-nosplice"))
                path = write(f"{tmp}/{name}.toml", conf)
                check = subprocess.run([args.verigated, "check-config", path],
                                       capture_output=True, text=True, timeout=30)
                if check.returncode != 0:
                    verigated_missing = f"`verigated check-config` refused the config: {check.stderr.strip() or check.stdout.strip()}"
                    log(f"verigated: {verigated_missing}")
                    continue
                cmd = [args.verigated, "--config", path]
                env = dict(os.environ, RUST_LOG="warn" if name != "verigated" else "info")
                configs[name] = (f"RUST_LOG={env['RUST_LOG']} " + " ".join(cmd), conf)
            if name != "direct":
                proc = start(cmd, f"{tmp}/{name}.log", env=env)
                try:
                    wait_port(port, proc, name)
                except RuntimeError as e:
                    with open(f"{tmp}/{name}.log", errors="replace") as f:
                        tail = f.read()[-2000:]
                    log(f"{name}: {e}; log: {tail}")
                    if name.startswith("verigated"):
                        verigated_missing = f"it did not start: {e}"
                    stop(proc)
                    continue
                pids_of = (lambda p=proc: process_tree(p.pid))
            else:
                pids_of = lambda: []
            try:
                results[name] = measure(name, port, bport, pids_of, args, log)
            except Exception as e:  # one failing path must not hide the others' numbers
                log(f"{name}: measurement failed: {e!r}")
                if name == "verigated":
                    verigated_missing = f"its measurement failed: {e!r}"
            finally:
                if proc is not None:
                    stop(proc)
            time.sleep(1)
        stop(backend)
        with open("/proc/loadavg") as f:
            load_at_end = " ".join(f.read().split()[:3])
        meta = {"started_at": started_at.isoformat(), "load": load_at_start, "load_end": load_at_end,
                "machine": machine(),
                "argv": sys.argv[1:], "args": vars(args)}
        with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
            json.dump({"meta": meta, "results": results, "configs": configs,
                       "verigated_missing": verigated_missing, "lines": lines}, f, indent=1)
        report(args, meta, results, configs, verigated_missing, lines)
    finally:
        kill_started()
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- the report


def machine():
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    def first_line(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (r.stdout or r.stderr).strip().splitlines()[0]
        except Exception as e:
            return f"? ({e})"
    commit = first_line(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "haproxy": first_line(["haproxy", "-v"]),
        "nginx": first_line(["nginx", "-v"]),
        "curl": first_line(["curl", "--version"]),
        "python": f"Python {platform.python_version()}, {ssl.OPENSSL_VERSION}",
        "commit": commit,
    }


def fmt(v, digits=2):
    return "n/a" if v is None or v != v else f"{v:.{digits}f}"


# Top-level sections this script writes; any other one after the log in RESULTS.md (the
# fleet or the snapshot figure, written from their own runs) is kept there.
OWN_SECTIONS = ("## Machine", "## verigated's column", "## Results against", "## Discussion",
                "## Attestation", "## Method", "## Exact commands", "## Log of the run")


def sections_of_others(path):
    """The `## ` sections of the existing file at `path` that this script does not write."""
    try:
        with open(path) as f:
            old = f.read().split("\n")
    except FileNotFoundError:
        return []
    # Only after the log: before it, the discussion's own `## ` headings are quoted.
    kept, keep, fenced, after_log = [], False, False, False
    for line in old:
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("## "):
            after_log = after_log or line.startswith("## Log of the run")
            keep = after_log and not line.startswith(OWN_SECTIONS)
        if keep:
            kept.append(line)
    return ["\n".join(kept).strip() + "\n"] if kept else []


def report(args, meta, results, configs, verigated_missing, lines):
    m = meta["machine"]
    started_at = datetime.datetime.fromisoformat(meta["started_at"])
    ha_names = ["haproxy-splice", "haproxy-nosplice"]
    proxies = [n for n in ["verigated", "verigated-quiet", "verigated-nosplice", "haproxy-splice", "haproxy-nosplice", "nginx-stream"] if n in results]

    out = []
    out.append("# verigated vs HAProxy 2.6 and nginx stream — SNI passthrough on loopback\n")
    out.append(f"Written by `bench/run.sh` on {started_at:%Y-%m-%d %H:%M} UTC (commit {m['commit']}). "
               "Re-run it to refresh this file; every number below comes from that one run.\n")
    out.append("## Machine\n")
    out.append(f"- `nproc`: {m['nproc']}\n- CPU: {m['cpu']}\n- kernel: {m['kernel']}\n"
               f"- {m['haproxy']}\n- {m['nginx']}\n- {m['curl']}\n- load generator: {m['python']}")
    out.append(f"- load average when the run started: {meta['load']}, when it ended: "
               f"{meta.get('load_end', 'not recorded')} (other work on the machine "
               "shares the cores: CPU-seconds are per process and barely move with it, latency does)\n")
    out.append("Client, proxy and backend share these cores, so absolute numbers are loopback "
               "numbers; the ratios are what the targets are about.\n")

    if verigated_missing:
        out.append("## verigated's column is missing\n")
        out.append(f"verigated was not measured in this run: {verigated_missing}. "
                   "The peers' numbers below are complete; re-run `bench/run.sh` once "
                   "`target/release/verigated` routes by SNI.\n")

    out.append("## Results against the targets\n")
    out.append("Ratios are to HAProxy with `option splice-auto` and with splice off. A target is "
               "judged against the better (lower) of the two HAProxy numbers.\n")

    def verdict(get, target, ratio=True, interval=None):
        if "verigated" not in results:
            return "target not judged: verigated not measured"
        ha = [get(results[h]) for h in ha_names if h in results]
        ha = [x for x in ha if x is not None and x == x]
        v = get(results["verigated"])
        if not ha or v is None or v != v:
            return "target not judged: numbers missing"
        best = min(ha)
        if ratio and best > 0:
            ok = v <= target * best
            return (f"target ≤ {target}× HAProxy's best: verigated is {v / best:.2f}× — "
                    + ("**met**" if ok else "**missed**"))
        ok = v <= best
        text = (f"target ≤ HAProxy's best ({best:.0f} µs): verigated {v:.0f} µs — "
                + ("**met**" if ok else "**missed**"))
        if interval is not None:
            best_name = min((h for h in ha_names if h in results), key=lambda h: get(results[h]))
            lo, hi = interval(results["verigated"])
            blo, bhi = interval(results[best_name])
            if lo <= bhi and blo <= hi:
                text += (f" (but the 95% intervals, {lo:.0f} .. {hi:.0f} and {blo:.0f} .. {bhi:.0f}, "
                         "overlap: the difference is within this run's noise)")
        return text

    ratio_metrics = [
        ("single-stream bulk wall time (the one curl download at a time above)", "wall s", 2,
         lambda r: r.get("bulk_wall"), 1.0),
        ("proxy CPU per GiB forwarded, single stream (the bulk download above)", "CPU s/GiB", 3,
         lambda r: r.get("cpu_per_gib"), 0.7),
        (f"proxy CPU per GiB forwarded, many streams ({getattr(args, 'streams', 4)} downloads at once)",
         "CPU s/GiB", 3, lambda r: r.get("many_cpu_per_gib"), 0.6),
        ("proxy CPU per new TLS connection (one request each)", "CPU µs/conn", 1,
         lambda r: r.get("cpu_per_conn_us"), 0.9),
        ("memory per idle TLS connection (RSS growth / connections)", "KiB/conn", 2,
         lambda r: r.get("idle_bytes_per_conn", float("nan")) / 1024, 0.7),
    ]
    for title, unit, digits, get, target in ratio_metrics:
        out.append(f"### {title}\n")
        out.append(f"| path | {unit} | ratio to HAProxy splice | ratio to HAProxy no splice |")
        out.append("|---|---|---|---|")
        for n in proxies:
            v = get(results[n])
            ratios = []
            for h in ha_names:
                hv = get(results[h]) if h in results else None
                ratios.append(fmt(v / hv) if (hv and v is not None and v == v) else "n/a")
            out.append(f"| {n} | {fmt(v, digits)} | {ratios[0]} | {ratios[1]} |")
        out.append(f"\n{verdict(get, target)}\n")
        if unit == "KiB/conn":
            for n in proxies:
                r = results[n]
                if r.get("idle_opened", args.idle) < args.idle:
                    out.append(f"- {n} held only {r['idle_opened']} of {args.idle} idle connections "
                               f"(first failure: {r.get('idle_error')}); its KiB/conn is over those.")
            out.append("")

    for key, p in (("added_p50", "p50"), ("added_p99", "p99")):
        out.append(f"### added connect+handshake latency over direct, {p}\n")
        out.append("| path | added µs | 95% interval (bootstrap) | minus HAProxy splice | minus HAProxy no splice |")
        out.append("|---|---|---|---|---|")
        for n in proxies:
            v, lo, hi = results[n][key]
            minus = []
            for h in ha_names:
                minus.append(f"{v - results[h][key][0]:+.0f}" if h in results else "n/a")
            out.append(f"| {n} | {v:.0f} | {lo:.0f} .. {hi:.0f} | {minus[0]} | {minus[1]} |")
        out.append(f"\n{verdict(lambda r, k=key: r[k][0], 1.0, ratio=False, interval=lambda r, k=key: (r[k][1], r[k][2]))}\n")

    out.append("### Raw numbers\n")
    out.append("| path | bulk GiB | bulk wall s | CPU s/GiB | many streams: wall s, CPU s/GiB | CPU µs/conn | handshake p50 µs | p99 µs | idle conns opened | idle KiB/conn |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    for n in proxies + (["direct"] if "direct" in results else []):
        r = results[n]
        idle = r.get("idle_bytes_per_conn")
        out.append(f"| {n} | {r['bulk_bytes'] / 2**30:.2f} | {r['bulk_wall']:.1f} | "
                   f"{fmt(r['cpu_per_gib'], 3)} | "
                   f"{fmt(r.get('many_wall'), 1)}, {fmt(r.get('many_cpu_per_gib'), 3)} | "
                   f"{fmt(r['cpu_per_conn_us'], 1)} | "
                   f"{r['p50_us']:.0f} | {r['p99_us']:.0f} | {r.get('idle_opened', '-')} | "
                   f"{fmt(idle / 1024 if idle is not None else None, 2)} |")
    out.append("")

    discussion = os.path.join(HERE, "discussion.md")
    if os.path.exists(discussion):
        out.append("## Discussion (hand-written, `bench/discussion.md`; check it against the numbers above)\n")
        with open(discussion) as f:
            out.append(f.read().strip() + "\n")

    attestation = os.path.join(HERE, "attestation", "RESULTS.md")
    if os.path.exists(attestation):
        # Its own run (bench/attestation/run.sh), shown here so one file holds every figure.
        out.append("## Attestation (`bench/attestation/run.sh`, a run of its own: `bench/attestation/RESULTS.md`)\n")
        with open(attestation) as f:
            body = f.read().strip().split("\n")
        out.append("\n".join("#" + l if l.startswith("#") else l for l in body[1:]).strip() + "\n")

    out.append("## Method\n")
    out.append(f"- One backend: nginx with TLS (ECDSA P-256, TLS 1.2/1.3), `/large` = a "
               f"{args.large_mib} MiB file, `/small` = a 3-byte response.")
    out.append(f"- Bulk: `curl -fsS -k --http1.1 -o /dev/null --resolve {SNI}:PORT:127.0.0.1 "
               f"https://{SNI}:PORT/large`, {args.bulk_repeats} times; CPU = utime+stime "
               f"(from `/proc/PID/stat`, in ticks of 1/{CLK_TCK} s, summed over the proxy's processes: "
               "nginx master and workers) after minus before, divided by GiB received; the wall "
               "time is the single-stream figure.")
    out.append(f"- Many streams: {getattr(args, 'streams', 4)} such downloads at once (one curl process "
               "each), CPU counted the same way.")
    out.append(f"- New connections: {args.connections} sequential connections through the proxy from "
               "Python's `ssl` (OpenSSL, full handshakes, no resumption), each `GET /small` then close, "
               "alternating with as many direct connections to the backend; proxy CPU after minus "
               "before, divided by the proxied count. Latency = time from `connect()` to the end of "
               "the TLS handshake on the client; \"added\" = the proxy's percentile minus the direct "
               "connections' percentile over the same seconds; the interval comes from 200 bootstrap "
               "resamples.")
    out.append(f"- Idle: {args.idle} connections opened (64 at a time, source addresses "
               f"{SOURCES[0]}..{SOURCES[-1]}), each completes its TLS handshake with the backend "
               f"through the proxy and then sends nothing; RSS (`/proc/PID/statm`, summed over the "
               f"proxy's processes) {args.settle}s after the last one minus {args.settle}s before the first, "
               "divided by the connections opened.")
    out.append("- Warm-up before measuring: one direct download of the large file (so that it is in "
               "the page cache before any path is timed); then, per path, 20 connections and one small download. Each path runs "
               "alone (the previous proxy is stopped first); the backend stays up. Threads and "
               "workers are each program's default (HAProxy: one thread per CPU; nginx: `worker_processes "
               "auto`; verigated: its default runtime).\n")
    out.append("## Exact commands and configurations\n")
    out.append("```\nbench/run.sh " + " ".join(meta["argv"]) + "\n```\n")
    for n, (cmd, conf) in configs.items():
        out.append(f"### {n}\n\n```\n{cmd}\n```\n\n```\n{conf.strip()}\n```\n")
    out.append("## Log of the run\n\n```")
    out.extend(lines)
    out.append("```\n")
    out.extend(sections_of_others(args.out))
    with open(args.out, "w") as f:
        f.write("\n".join(out))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
