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
#   6. verigated's log: one line per connection;
#   7. attestation on a simulated confidential VM (simulated TEE, a real swtpm, an IMA
#      log the demo writes and extends into PCR 10): `verigate snapshot`, then
#      `verigate verify` with the three applications (every check passes), then two
#      attacks that verify catches: a backend's certificate swapped, and a new
#      executable in the IMA log.
#
# Run by scripts/demo.sh after the release build; VERIGATED=path and VERIGATE=path
# override the binaries.
# Every process it starts is stopped by PID on exit, and its temp dir removed.
set -euo pipefail
cd "$(dirname "$0")/.."

VERIGATED=${VERIGATED:-target/release/verigated}
VERIGATE=${VERIGATE:-target/release/verigate}
for bin in "$VERIGATED" "$VERIGATE"; do
  if [ ! -x "$bin" ]; then
    echo "demo: $bin not found; run scripts/demo.sh (it builds it) or set VERIGATED/VERIGATE" >&2
    exit 2
  fi
done
for tool in swtpm tpm2_pcrextend openssl curl python3; do
  command -v "$tool" >/dev/null || { echo "demo: $tool not installed (scripts/install-deps.sh)" >&2; exit 2; }
done

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
free_port_pair() { # P such that P and P+1 are free (swtpm: server and control ports)
  python3 -c '
import socket
for _ in range(100):
    a = socket.socket(); a.bind(("127.0.0.1", 0)); p = a.getsockname()[1]
    b = socket.socket()
    try:
        b.bind(("127.0.0.1", p + 1)); print(p); break
    except OSError:
        pass'
}
wait_port() { # wait until something listens on 127.0.0.1:$1
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "demo: nothing listens on 127.0.0.1:$1" >&2
  return 1
}
stop_pid() { # SIGTERM one process we started, wait for it, forget its PID
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  local keep=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}
fingerprint() { openssl x509 -noout -fingerprint -sha256 | cut -d= -f2; }

# --- 1. three TLS services ----------------------------------------------------------
say "Starting three TLS services, each with its own self-signed certificate"
NAMES=(app1.example.com app2.example.com svc.internal.example.com)
declare -A PORT FPR SPID
start_service() { # start_service NAME CERT KEY: an HTTPS server for NAME on PORT[NAME]
  local dir="$WORK/$1"
  # -WWW serves files of the current directory over HTTPS.
  (cd "$dir/www" && exec openssl s_server -quiet -WWW -accept "127.0.0.1:${PORT[$1]}" \
    -cert "$2" -key "$3") >>"$dir/s_server.log" 2>&1 &
  SPID[$1]=$!
  PIDS+=("$!")
}
for name in "${NAMES[@]}"; do
  dir="$WORK/$name"
  mkdir -p "$dir/www"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=$name" -addext "subjectAltName=DNS:$name" \
    -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
  echo "hello from $name" >"$dir/www/index.html"
  PORT[$name]=$(free_port)
  start_service "$name" "$dir/cert.pem" "$dir/key.pem"
  FPR[$name]=$(fingerprint <"$dir/cert.pem")
  printf '  %-26s 127.0.0.1:%-6s certificate sha256 %s\n' "$name" "${PORT[$name]}" "${FPR[$name]:0:29}..."
done
for name in "${NAMES[@]}"; do wait_port "${PORT[$name]}"; done

# --- 1b. a simulated confidential VM: a TPM and an IMA log -------------------------
# No SEV-SNP or TDX here: verigated signs "simulated" TEE reports with a key of its data
# dir (verify accepts them only with --allow-simulated-tee). The TPM is real (swtpm), and
# the IMA log is one the demo writes as the kernel would: each entry's hash is extended
# into PCR 10, so the TPM quote vouches for the log.
say "A simulated confidential VM: swtpm (TPM 2.0) and an IMA log extended into PCR 10"
TPM_PORT=$(free_port_pair)
mkdir -p "$WORK/swtpm"
swtpm socket --tpm2 --tpmstate "dir=$WORK/swtpm" \
  --server "type=tcp,port=$TPM_PORT,bindaddr=127.0.0.1" \
  --ctrl "type=tcp,port=$((TPM_PORT + 1)),bindaddr=127.0.0.1" \
  --flags not-need-init,startup-clear --log "file=$WORK/swtpm/swtpm.log" &
SWTPM_PID=$!
PIDS+=("$SWTPM_PID")
wait_port "$TPM_PORT"
TCTI="swtpm:host=127.0.0.1,port=$TPM_PORT"
echo "  swtpm pid $SWTPM_PID, TCTI $TCTI"

# ima.py LOG PATH [FILE]: appends an ima-ng entry (sha256 file digest) for PATH to the
# binary measurement list LOG, as the kernel does when PATH is executed, and prints the
# SHA-256 of the entry's template data: the value the kernel extends into PCR 10's
# SHA-256 bank. Without FILE, PATH is `boot_aggregate` (digest of PCRs 0-9, all zero).
cat >"$WORK/ima.py" <<'PYEOF'
import hashlib, struct, sys
log, path = sys.argv[1], sys.argv[2]
if len(sys.argv) > 3:
    with open(sys.argv[3], "rb") as f:
        digest = hashlib.sha256(f.read()).digest()
else:
    digest = hashlib.sha256(bytes(32 * 10)).digest()
fields = [b"sha256:\0" + digest, path.encode() + b"\0"]
data = b"".join(struct.pack("<I", len(f)) + f for f in fields)
entry = (struct.pack("<I", 10) + hashlib.sha1(data).digest()
         + struct.pack("<I", 6) + b"ima-ng" + struct.pack("<I", len(data)) + data)
with open(log, "ab") as f:
    f.write(entry)
print(hashlib.sha256(data).hexdigest())
PYEOF
IMA_LOG="$WORK/binary_runtime_measurements"
: >"$IMA_LOG"
measure() { # measure PATH [FILE]: log it, then extend PCR 10 with the same value
  local value
  value=$(python3 "$WORK/ima.py" "$IMA_LOG" "$@")
  TPM2TOOLS_TCTI="$TCTI" tpm2_pcrextend "10:sha256=$value"
  printf '  %-34s extended PCR 10 by %s...\n' "$1" "${value:0:16}"
}
measure boot_aggregate
for f in /usr/bin/bash /usr/bin/openssl /usr/bin/curl; do
  [ -r "$f" ] && measure "$f" "$f"
done
PCR10=$(TPM2TOOLS_TCTI="$TCTI" tpm2_pcrread sha256:10 | tail -n 1 | sed 's/.*0x//' | tr 'A-F' 'a-f')
echo "  the TPM's PCR 10 (sha256) is $PCR10; the log replays to it:"
echo "  \$ verigate ima replay --bank sha256 --expect $PCR10 binary_runtime_measurements"
"$VERIGATE" ima replay --bank sha256 --expect "$PCR10" "$IMA_LOG" |
  grep -E '^(entries|pcr 10|\[)' | sed 's/^/    /'
# The files a snapshot scans besides the IMA log (a real VM: "/", minus volatile trees).
mkdir -p "$WORK/vm-root/usr/bin"
cp /usr/bin/bash "$WORK/vm-root/usr/bin/"

# --- 2. verigated in front ----------------------------------------------------------
GW_PORT=$(free_port)
# The operator token of the demo VM (app control, /metrics, starting a snapshot).
DEMO_TOKEN="demo-operator-token"
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
tee = "simulated"
tpm = "$TCTI"
ima_log = "$IMA_LOG"

[snapshot]
roots = ["$WORK/vm-root"]
exclude = []

# /metrics and starting a snapshot take this token (its SHA-256 here).
[api]
admin_token_sha256 = ["$(printf %s "$DEMO_TOKEN" | sha256sum | cut -d' ' -f1)"]
EOF
say "verigated's configuration ($CONFIG)"
sed 's/^/  /' "$CONFIG"
say "verigated check-config"
"$VERIGATED" check-config "$CONFIG"

start_verigated() {
  "$VERIGATED" --config "$CONFIG" >>"$WORK/verigated.log" 2>&1 &
  GW_PID=$!
  PIDS+=("$GW_PID")
  wait_port "$GW_PORT"
}
say "Starting verigated on 127.0.0.1:$GW_PORT"
start_verigated
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
  -H "Authorization: Bearer $DEMO_TOKEN" "https://vm.example.com:$GW_PORT/metrics" |
  grep -E '^verigated_(connections_total|bytes_total|unrecognized_name_total)' | sed 's/^/  /'

# --- 6. the log ------------------------------------------------------------------------
say "verigated's log: one line per connection"
sleep 0.3 # the last connection's line is written as it closes
grep 'verigated::connection' "$WORK/verigated.log" | grep -v 'closed_before_client_hello' |
  sed -E 's/^[^ ]+ +INFO verigated::connection: connection /  /' | tail -n 12

# --- 7. attestation: snapshot, verify, and two attacks ---------------------------------
URL="https://127.0.0.1:$GW_PORT"
# --allow-insecure-tls: verigated's own certificate is self-signed; the attestation pins
# it instead (the manifest must hold the certificate this very connection presented).
# --allow-simulated-tee: there is no SEV-SNP/TDX hardware in this demo.
APPS=(--connect-to "127.0.0.1:$GW_PORT")
for name in "${NAMES[@]}"; do APPS+=(--application "$name"); done
# verify [--brief] [OPTION...]: runs verigate verify with the three applications (and the
# options) and prints its report (--brief: only the failed checks and the verdict) and its
# exit status.
verify() {
  local out rc=0 brief=
  if [ "${1:-}" = --brief ]; then brief=1; shift; fi
  out=$("$VERIGATE" --url "$URL" --allow-insecure-tls verify --snapshot "$WORK/snapshot.json" \
    --allow-simulated-tee "${APPS[@]}" "$@" 2>&1) || rc=$?
  if [ -n "$brief" ]; then
    printf '  (%s checks passed)\n' "$(grep -c '^\[PASS\]' <<<"$out")"
    grep -v -E '^\[PASS\]|^(url|domain|tee|snapshot): |^$' <<<"$out" | sed 's/^/  /'
  else
    sed 's/^/  /' <<<"$out"
  fi
  printf '  \033[1m-> verigate verify exit status: %s\033[0m\n' "$rc"
  LAST_RC=$rc
}
wait_manifest() { # wait until verigated's manifest holds the SHA-256 $1
  for _ in $(seq 1 100); do
    curl --silent --insecure --max-time 10 "$URL/v1/manifest" | grep -qi "$1" && return 0
    sleep 0.1
  done
  echo "demo: the manifest never showed certificate $1" >&2
  return 1
}

say "Snapshot: freeze the VM's state (TEE and TPM policy, certificates, IMA files)"
echo "  \$ VERIGATE_TOKEN=... verigate --url $URL --allow-insecure-tls snapshot --allow-simulated-tee --out snapshot.json"
rc=0
out=$(VERIGATE_TOKEN="$DEMO_TOKEN" "$VERIGATE" --url "$URL" --allow-insecure-tls snapshot --allow-simulated-tee \
  --out "$WORK/snapshot.json" </dev/null 2>&1) || rc=$?
sed 's/^/  /' <<<"$out"
printf '  \033[1m-> verigate snapshot exit status: %s\033[0m\n' "$rc"
[ "$rc" = 0 ] || { echo "demo: the snapshot failed" >&2; exit 1; }
python3 - "$WORK/snapshot.json" <<'PYEOF'
import json, sys
s = json.load(open(sys.argv[1]))
print("  the snapshot pins:")
for k, v in s.items():
    if isinstance(v, dict):
        v = ", ".join(sorted(v)[:6]) + (" ..." if len(v) > 6 else "")
    elif isinstance(v, list):
        v = f"{len(v)} items"
    print(f"    {k}: {str(v)[:90]}")
PYEOF

say "Verify the untouched VM: one TEE report, and one handshake per application"
echo "  \$ verigate --url $URL --allow-insecure-tls verify --snapshot snapshot.json --allow-simulated-tee ${APPS[*]}"
verify
[ "$LAST_RC" = 0 ] || { echo "demo: the untouched VM should pass" >&2; exit 1; }

say "Attack 1: app2's certificate and key swapped inside the VM (e.g. a stolen key replaced)"
dir="$WORK/app2.example.com"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -subj "/CN=app2.example.com" -addext "subjectAltName=DNS:app2.example.com" \
  -keyout "$dir/key2.pem" -out "$dir/cert2.pem" 2>/dev/null
stop_pid "${SPID[app2.example.com]}"
start_service app2.example.com "$dir/cert2.pem" "$dir/key2.pem"
wait_port "${PORT[app2.example.com]}"
NEW=$(fingerprint <"$dir/cert2.pem" | tr -d : | tr 'A-F' 'a-f')
echo "  app2 restarted with a new certificate, sha256 ${NEW:0:16}...; SIGHUP makes verigated"
echo "  refresh its manifest at once (it also refreshes periodically)"
kill -HUP "$GW_PID"
wait_manifest "$NEW"
verify --brief
[ "$LAST_RC" = 1 ] || { echo "demo: a swapped key should fail verify" >&2; exit 1; }
echo "  A planned key change is accepted with --allow-key-change (the VM attests the new"
echo "  certificate, so an impostor would still fail):"
verify --brief --allow-key-change

say "A renewal that keeps the key (certbot --reuse-key) passes without a flag"
openssl req -x509 -new -key "$dir/key.pem" -days 60 -subj "/CN=app2.example.com" \
  -addext "subjectAltName=DNS:app2.example.com" -out "$dir/cert3.pem" 2>/dev/null
stop_pid "${SPID[app2.example.com]}"
start_service app2.example.com "$dir/cert3.pem" "$dir/key.pem"
wait_port "${PORT[app2.example.com]}"
kill -HUP "$GW_PID"
wait_manifest "$(fingerprint <"$dir/cert3.pem" | tr -d : | tr 'A-F' 'a-f')"
verify --brief
[ "$LAST_RC" = 0 ] || { echo "demo: a renewal with the same key should pass" >&2; exit 1; }

say "Back to app2's original certificate: verify passes again"
stop_pid "${SPID[app2.example.com]}"
start_service app2.example.com "$dir/cert.pem" "$dir/key.pem"
wait_port "${PORT[app2.example.com]}"
kill -HUP "$GW_PID"
wait_manifest "$(tr -d : <<<"${FPR[app2.example.com]}" | tr 'A-F' 'a-f')"
verify --brief

say "Attack 2: a new executable runs in the VM (IMA logs it and extends PCR 10)"
mkdir -p "$WORK/vm-root/usr/local/bin"
printf '#!/bin/sh\n# pretend miner\n' >"$WORK/vm-root/usr/local/bin/cryptominer"
chmod +x "$WORK/vm-root/usr/local/bin/cryptominer"
# The demo's swtpm serves one client at a time and verigated holds the connection, so
# verigated steps aside while the demo extends PCR 10 (in a real VM the kernel does it).
stop_pid "$GW_PID"
measure /usr/local/bin/cryptominer "$WORK/vm-root/usr/local/bin/cryptominer"
start_verigated
echo "  verigated restarted (pid $GW_PID); the log and PCR 10 still agree, so only the"
echo "  comparison with the snapshot can tell:"
verify --brief
[ "$LAST_RC" = 1 ] || { echo "demo: an unknown executable should fail verify" >&2; exit 1; }

say "Done: stopping verigated (SIGTERM drains open connections) and the services"
kill -TERM "$GW_PID"
wait "$GW_PID" || true
grep -E 'stopping|drained' "$WORK/verigated.log" | tail -n 2 | sed -E 's/^[^ ]+ +//; s/^/  /'
