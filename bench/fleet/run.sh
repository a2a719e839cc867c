#!/usr/bin/env bash
# 50 verigated instances (simulated TEE, no TPM, one route each) on loopback, verified by
# one `verigate verify --fleet` against one policy; then `verigate watch` over them at a
# 10 s interval. Writes bench/fleet/RESULTS.md: wall time, CPU (user+sys) and peak RSS
# of verify --fleet (GNU time), watch's CPU share over WATCH_SECONDS, and the load
# average (the machine is shared).
#
# Usage: bench/fleet/run.sh [VMS] [RUNS]   (default 50 VMs, 5 runs after one enrolling run)
# Needs openssl, curl, python3, /usr/bin/time; builds target/release/{verigate,verigated}
# unless BENCH_NO_BUILD=1. Every process it starts is stopped by PID, its temp dir removed.
set -euo pipefail
cd "$(dirname "$0")/../.."
VMS=${1:-50}
RUNS=${2:-5}
WATCH_SECONDS=${WATCH_SECONDS:-60}
. bench/lib.sh
bench_needs openssl curl python3
bench_build verigated verigate
bench_workdir fleet

# The snapshot (of the first VM) takes a credential.
export VERIGATE_TOKEN=bench-token
TOKEN_SHA256=$(printf %s "$VERIGATE_TOKEN" | sha256sum | cut -d' ' -f1)

# One application certificate, shared by every replica (the replicas pattern).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=a.example.com -addext subjectAltName=DNS:a.example.com \
  -keyout "$WORK/a.key" -out "$WORK/a.pem" 2>/dev/null
APP_PORT=$(free_ports 1)
openssl s_server -quiet -accept "127.0.0.1:$APP_PORT" -cert "$WORK/a.pem" -key "$WORK/a.key" -www >/dev/null 2>&1 &
PIDS+=($!)

: > "$WORK/fleet.toml"
for i in $(seq 1 "$VMS"); do
  d="$WORK/vm$i"; mkdir -p "$d/data"
  host="127.0.1.$i"; port=$(free_ports 1)
  cat > "$d/verigated.toml" <<CFG
[gateway]
listen = ["$host:$port"]
domain = "vm.example.com"
data_dir = "$d/data"

[attestation]
tee = "simulated"
simulated_measurement = "$(printf '5a%.0s' $(seq 48))"
tpm = "none"

[snapshot]
roots = ["$d/data"]
exclude = []

[[route]]
sni = "a.example.com"
backend = "127.0.0.1:$APP_PORT"

[api]
admin_token_sha256 = ["$TOKEN_SHA256"]
CFG
  "$VERIGATED" --config "$d/verigated.toml" > "$d/log" 2>&1 &
  PIDS+=($!)
  cat >> "$WORK/fleet.toml" <<VM
[[vm]]
name = "vm$i"
url = "https://$host:$port"
policy = "golden.policy.json"
applications = ["a.example.com"]
connect_to = ["$host:$port"]

VM
  echo "https://$host:$port" >> "$WORK/urls"
done
for u in $(cat "$WORK/urls"); do
  for _ in $(seq 100); do curl -sk --max-time 2 "$u/healthz" >/dev/null && break; sleep 0.2; done
done
first=$(head -1 "$WORK/urls")
(cd "$WORK" && "$VERIGATE" --url "$first" --allow-insecure-tls snapshot --allow-simulated-tee --out golden.snapshot.json >/dev/null)
(cd "$WORK" && "$VERIGATE" policy from-snapshot golden.snapshot.json --domain vm.example.com --out golden.policy.json >/dev/null)
run_fleet() { (cd "$WORK" && /usr/bin/time -f '%e %U %S %M' -o "$WORK/time" \
  "$VERIGATE" --allow-insecure-tls verify --fleet fleet.toml --allow-simulated-tee > "$WORK/out" 2>&1) || true; cat "$WORK/time"; }
run_fleet >/dev/null   # first contact: enrols every VM
grep -q "summary: $VMS VMs, $VMS passed" "$WORK/out" || { cat "$WORK/out"; echo "bench: the fleet did not pass" >&2; exit 1; }
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
: > "$WORK/runs"
for _ in $(seq "$RUNS"); do run_fleet >> "$WORK/runs"; grep -q "$VMS passed" "$WORK/out" || { cat "$WORK/out"; exit 1; }; done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# watch at 10 s: CPU ticks of the process over WATCH_SECONDS.
LISTEN=127.0.0.1:$(free_ports 1)
(cd "$WORK" && exec "$VERIGATE" --allow-insecure-tls watch --fleet fleet.toml --allow-simulated-tee --interval 10s --listen "$LISTEN" > "$WORK/watch.log" 2>&1) &
WPID=$!; PIDS+=($WPID)
sleep 12   # the first round (whole IMA logs) is done
t0=$(awk '{print $14+$15}' /proc/$WPID/stat); s0=$(date +%s.%N)
sleep "$WATCH_SECONDS"
t1=$(awk '{print $14+$15}' /proc/$WPID/stat); s1=$(date +%s.%N)
HZ=$(getconf CLK_TCK)
WATCH_CPU=$(python3 -c "print(f'{100*($t1-$t0)/$HZ/($s1-$s0):.2f}')")
ROUNDS=$(curl -s "http://$LISTEN/metrics" | awk '/^verigate_watch_rounds_total/{print $2}')
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$WORK/runs" "$VMS" "$WATCH_CPU" "$ROUNDS" "$LOAD_BEFORE" "$LOAD_AFTER" "$LOAD_END" "$WATCH_SECONDS" > bench/fleet/RESULTS.md <<'PY'
import statistics, sys
runs = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
vms, cpu, rounds, lb, la, le, ws = sys.argv[2:9]
wall = [r[0] for r in runs]; user = [r[1] for r in runs]; sys_ = [r[2] for r in runs]; rss = [r[3] for r in runs]
print(f"# verify --fleet over {vms} VMs\n")
print("Command: `bench/fleet/run.sh` (release build; simulated TEE, no TPM, one application each, one policy, VMs already enrolled; `--parallel 16`).\n")
print("| runs | wall median (min-max) s | user+sys median s | peak RSS median MiB |")
print("|---|---|---|---|")
print(f"| {len(runs)} | {statistics.median(wall):.2f} ({min(wall):.2f}-{max(wall):.2f}) | {statistics.median([u+s for u,s in zip(user,sys_)]):.2f} | {statistics.median(rss)/1024:.1f} |\n")
print(f"`verigate watch --interval 10s` over the same {vms} VMs: {cpu}% of one core over {ws} s ({rounds} rounds by then, incremental IMA).\n")
print(f"Load average (1/5/15 min): {lb} before the verify runs, {la} after, {le} at the end of the watch (the 2-core machine is shared with other helpers' builds).")
PY
cat bench/fleet/RESULTS.md
