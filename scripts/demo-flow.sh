#!/usr/bin/env bash
# The demo flow, on loopback, with nothing installed system-wide and nothing left behind:
#
#   1. three TLS services (openssl s_server), each with its own self-signed certificate;
#   2. verigated in front of them on one port, routing by SNI (TLS passes untouched);
#   3. curl and openssl connect to each name through verigated and show which
#      certificate answered: the service's own, so a client can still pin it;
#   4. an unknown name gets a TLS unrecognized_name alert, until a reload (SIGHUP)
#      adds a catch-all route;
#   5. verigated's own endpoint (its own name, or no SNI): /healthz and /metrics;
#   6. verigated's log: one line per connection.
#
# Run by scripts/demo.sh after the release build; VERIGATED=path overrides the binary.
# Every process it starts is stopped by PID on exit, and its temp dir removed.
set -euo pipefail
cd "$(dirname "$0")/.."

VERIGATED=${VERIGATED:-target/release/verigated}
if [ ! -x "$VERIGATED" ]; then
  echo "demo: $VERIGATED not found; run scripts/demo.sh (it builds it) or set VERIGATED" >&2
  exit 2
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/verigate-demo.XXXXXX")
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() { # wait until something listens on 127.0.0.1:$1
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "demo: nothing listens on 127.0.0.1:$1" >&2
  return 1
}
fingerprint() { openssl x509 -noout -fingerprint -sha256 | cut -d= -f2; }

# --- 1. three TLS services ----------------------------------------------------------
say "Starting three TLS services, each with its own self-signed certificate"
NAMES=(app1.example.com app2.example.com svc.internal.example.com)
declare -A PORT FPR
for name in "${NAMES[@]}"; do
  dir="$WORK/$name"
  mkdir -p "$dir/www"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=$name" -addext "subjectAltName=DNS:$name" \
    -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
  echo "hello from $name" >"$dir/www/index.html"
  PORT[$name]=$(free_port)
  # -WWW serves files of the current directory over HTTPS.
  (cd "$dir/www" && exec openssl s_server -quiet -WWW -accept "127.0.0.1:${PORT[$name]}" \
    -cert "$dir/cert.pem" -key "$dir/key.pem") >"$dir/s_server.log" 2>&1 &
  PIDS+=($!)
  FPR[$name]=$(fingerprint <"$dir/cert.pem")
  printf '  %-26s 127.0.0.1:%-6s certificate sha256 %s\n' "$name" "${PORT[$name]}" "${FPR[$name]:0:29}..."
done
for name in "${NAMES[@]}"; do wait_port "${PORT[$name]}"; done

# --- 2. verigated in front ----------------------------------------------------------
GW_PORT=$(free_port)
CONFIG="$WORK/verigated.toml"
cat >"$CONFIG" <<EOF
[gateway]
listen = ["127.0.0.1:$GW_PORT"]
domain = "vm.example.com"
data_dir = "$WORK/verigated"

[[route]]
sni = "app1.example.com"
backend = "127.0.0.1:${PORT[app1.example.com]}"

[[route]]
sni = "app2.example.com"
backend = "127.0.0.1:${PORT[app2.example.com]}"

[[route]]
sni = "*.internal.example.com"
backend = "127.0.0.1:${PORT[svc.internal.example.com]}"

[attestation]
tee = "none"
tpm = "none"
EOF
say "verigated's configuration ($CONFIG)"
sed 's/^/  /' "$CONFIG"
say "verigated check-config"
"$VERIGATED" check-config "$CONFIG"

say "Starting verigated on 127.0.0.1:$GW_PORT"
"$VERIGATED" --config "$CONFIG" >"$WORK/verigated.log" 2>&1 &
GW_PID=$!
PIDS+=("$GW_PID")
wait_port "$GW_PORT"
echo "  pid $GW_PID; own certificate generated in $WORK/verigated/data/"

# --- 3. each name through verigated ------------------------------------------------
say "Connecting to each name through verigated (one port, routed by SNI)"
for name in "${NAMES[@]}"; do
  body=$(curl --silent --show-error --insecure --max-time 10 \
    --resolve "$name:$GW_PORT:127.0.0.1" "https://$name:$GW_PORT/index.html")
  seen=$(openssl s_client -connect "127.0.0.1:$GW_PORT" -servername "$name" </dev/null 2>/dev/null | fingerprint)
  if [ "$seen" = "${FPR[$name]}" ]; then verdict="the service's own certificate"; else verdict="ANOTHER certificate"; fi
  printf '  %-26s curl says: %-34s openssl saw: %s\n' "$name" "\"$body\"" "$verdict"
  [ "$seen" = "${FPR[$name]}" ] || { echo "demo: $name was answered by the wrong certificate" >&2; exit 1; }
done

# --- 4. an unknown name --------------------------------------------------------------
say "An unknown name: verigated answers with a TLS unrecognized_name alert"
if out=$(curl --silent --show-error --insecure --max-time 10 \
  --resolve "nobody.example.org:$GW_PORT:127.0.0.1" "https://nobody.example.org:$GW_PORT/" 2>&1); then
  echo "demo: an unknown name was served: $out" >&2
  exit 1
fi
echo "  $out"

say "Reload (SIGHUP): a catch-all route, sni = \"*\", to app2; open connections are untouched"
printf '\n[[route]]\nsni = "*"\nbackend = "127.0.0.1:%s"\n' "${PORT[app2.example.com]}" >>"$CONFIG"
kill -HUP "$GW_PID"
for _ in $(seq 1 100); do
  grep -q 'configuration reloaded' "$WORK/verigated.log" && break
  sleep 0.1
done
body=$(curl --silent --show-error --insecure --max-time 10 \
  --resolve "nobody.example.org:$GW_PORT:127.0.0.1" "https://nobody.example.org:$GW_PORT/index.html")
echo "  nobody.example.org now answers: \"$body\""

# --- 5. verigated's own endpoint ---------------------------------------------------
say "verigated's own endpoint (SNI vm.example.com): /healthz"
printf '  '
curl --silent --insecure --max-time 10 --resolve "vm.example.com:$GW_PORT:127.0.0.1" \
  "https://vm.example.com:$GW_PORT/healthz"
say "/metrics (over HTTP/2), a few lines"
curl --silent --insecure --http2 --max-time 10 --resolve "vm.example.com:$GW_PORT:127.0.0.1" \
  "https://vm.example.com:$GW_PORT/metrics" |
  grep -E '^verigated_(connections_total|bytes_total|unrecognized_name_total)' | sed 's/^/  /'

# --- 6. the log ------------------------------------------------------------------------
say "verigated's log: one line per connection"
sleep 0.3 # the last connection's line is written as it closes
grep 'verigated::connection' "$WORK/verigated.log" | grep -v 'closed_before_client_hello' |
  sed -E 's/^[^ ]+ +INFO verigated::connection: connection /  /' | tail -n 12

say "Done: stopping verigated (SIGTERM drains open connections) and the services"
kill -TERM "$GW_PID"
wait "$GW_PID" || true
grep -E 'stopping|drained' "$WORK/verigated.log" | sed -E 's/^[^ ]+ +//; s/^/  /'
