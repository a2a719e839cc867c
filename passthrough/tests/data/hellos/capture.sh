#!/bin/sh
# Re-captures the ClientHellos in this folder from real clients (see README.md).
# Run from the workspace root: sh passthrough/tests/data/hellos/capture.sh
# Needs: openssl, curl, chromium (Debian package `chromium`). Loopback only; each client
# is bounded by `timeout`, and every process started here is killed by PID on exit.
set -eu
D=passthrough/tests/data/hellos
cargo build -q -p gateway --example capture_hello
BIN=target/debug/examples/capture_hello
TMP=$(mktemp -d)
PIDS=""
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

# Starts the capturing listener for OUT and sets PORT; the client is run by the caller.
listen() {
    : > "$TMP/port"
    "$BIN" listen "$1" > "$TMP/port" &
    LPID=$!
    PIDS="$PIDS $LPID"
    i=0
    while [ ! -s "$TMP/port" ]; do
        i=$((i + 1)); [ $i -lt 200 ] || { echo "listener did not start" >&2; exit 1; }
        sleep 0.05
    done
    PORT=$(cat "$TMP/port")
}

"$BIN" rustls "$D/rustls_h2_http11.bin" rustls.example.com h2,http/1.1

listen "$D/openssl_mixed_case.bin"
timeout 20 openssl s_client -connect "127.0.0.1:$PORT" -servername OpenSSL.Example.COM \
    -alpn h2,http/1.1,acme-tls/1 < /dev/null > /dev/null 2>&1 || true
wait "$LPID"

listen "$D/openssl_tls12_no_sni.bin"
timeout 20 openssl s_client -connect "127.0.0.1:$PORT" -noservername -tls1_2 \
    < /dev/null > /dev/null 2>&1 || true
wait "$LPID"

listen "$D/curl.bin"
timeout 20 curl -s -o /dev/null --resolve "curl.example.net:$PORT:127.0.0.1" \
    "https://curl.example.net:$PORT/" || true
wait "$LPID"

listen "$D/chromium_pq.bin"
mkdir -p "$TMP/chromium"
timeout 30 chromium --headless --no-sandbox --disable-gpu --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$TMP/chromium" --host-resolver-rules="MAP pq.chromium.test 127.0.0.1" \
    --dump-dom "https://pq.chromium.test:$PORT/" > /dev/null 2>&1 || true
wait "$LPID"

ls -l "$D"/*.bin
