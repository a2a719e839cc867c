#!/bin/sh
# Runs the SNI-passthrough benchmark in one go on loopback and writes bench/RESULTS.md:
# verigated beside HAProxy 2.6 (with and without splice), nginx stream + ssl_preread and a
# direct connection, all in front of one nginx TLS backend. See bench/bench.py for what is
# measured and how; pass --quick to check the script with small counts.
#
# Needs: haproxy, nginx with libnginx-mod-stream, curl, openssl, python3, and
# target/release/verigated (built here unless BENCH_NO_BUILD=1). Loopback only; every
# process it starts is killed by PID when it ends, whatever the reason.
set -eu
cd "$(dirname "$0")/.."

for tool in haproxy nginx curl openssl python3; do
    command -v "$tool" > /dev/null || { echo "bench: $tool not found" >&2; exit 2; }
done
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] ||
    { echo "bench: nginx stream module missing (apt-get install libnginx-mod-stream)" >&2; exit 2; }

# ~9000 idle connections need ~18000 descriptors in the proxy (client and backend side).
ulimit -n "$(ulimit -Hn)" 2> /dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 19000 ]; then
    echo "bench: open-files limit $(ulimit -n) is below 19000; pass a smaller --idle" >&2
fi

if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    # A failed build leaves verigated's column empty; the peers are still measured.
    cargo build --release -p gateway --bin verigated ||
        echo "bench: verigated did not build; measuring the peers only" >&2
fi

exec timeout 3600 python3 -B bench/bench.py "$@"
