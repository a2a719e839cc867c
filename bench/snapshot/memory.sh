#!/usr/bin/env bash
# Snapshot job memory: a real verigated (release build, simulated TEE, no TPM) makes
# snapshots of a tree through `POST /v1/snapshot`: one cold (no scan cache), then two
# cached. For each job: files examined and hashed, wall time, verigated's RSS before
# (idle), its peak during the job (sampled every 20 ms from /proc/PID/status, and the
# kernel's VmHWM high-water mark, reset before each job via /proc/PID/clear_refs) and
# its RSS once the job is over. Prints a Markdown table on stdout.
#
# usage: bench/snapshot/memory.sh [VERIGATED] [ROOT]
#   VERIGATED: the binary (default: target/release/verigated, built if missing)
#   ROOT:      the tree to scan: / (default, with the excludes below), a directory, or
#              `synthetic` for a root-like tree made by gen_root_like.py (env FILES=360000
#              files, CODE=8300 of them code)
#   env EXCLUDE: extra excludes, space-separated (default: /work, the shared build trees)
#   env NORMAL_PRIORITY=1 (default): move the scan threads back from SCHED_IDLE and the
#       idle I/O class to the normal ones as soon as they appear. On a shared, loaded
#       machine idle-class threads barely run and a job takes tens of minutes; memory is
#       the same either way. NORMAL_PRIORITY=0 keeps verigated's own choice.
#   env TRIM_PROBE=1: after the last job, call glibc's malloc_trim(0) in verigated
#       through gdb and report the RSS after it (what trimming gives on that binary).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
BIN="${1:-}"
SCAN_ROOT="${2:-/}"
EXTRA_EXCLUDE="${EXCLUDE-/work}"
if [ -z "$BIN" ]; then
    (cd "$REPO" && cargo build --release --locked -p gateway --bin verigated >&2)
    BIN="$(cd "$REPO" && cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/verigated"
fi

WORK="$(mktemp -d /var/tmp/verigate-snapmem.XXXXXX)"
PID=""
cleanup() {
    if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    rm -rf -- "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/data"
if [ "$SCAN_ROOT" = synthetic ]; then
    SCAN_ROOT="$WORK/tree"
    echo "tree: $(python3 "$HERE/gen_root_like.py" "$SCAN_ROOT" "${FILES:-360000}" "${CODE:-8300}") under $SCAN_ROOT"
    # A file version changed less than 2 s before a scan is not cached (see
    # scan::CACHE_SETTLE_TIME): let the tree settle so that the cached runs are cached.
    sleep 3
fi

TOKEN="snapmem-bench-token"
TOKEN_SHA="$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
DOMAIN="vm.example.com"
excludes='"/proc", "/sys", "/dev", "/run", "/tmp", "/var/tmp"'
for e in $EXTRA_EXCLUDE; do excludes="$excludes, \"$e\""; done
cat >"$WORK/verigated.toml" <<EOF
[gateway]
listen = ["127.0.0.1:$PORT"]
domain = "$DOMAIN"
data_dir = "$WORK/data"

[attestation]
tee = "simulated"
tpm = "none"
ima_log = "$WORK/no-ima-log"

[snapshot]
roots = ["$SCAN_ROOT"]
exclude = [$excludes]

[api]
admin_token_sha256 = ["$TOKEN_SHA"]
EOF

RUST_LOG=warn "$BIN" --config "$WORK/verigated.toml" >"$WORK/verigated.log" 2>&1 &
PID=$!
api() {
    curl -sS --max-time 30 -k --resolve "$DOMAIN:$PORT:127.0.0.1" \
        -H "Authorization: Bearer $TOKEN" -X "$1" "https://$DOMAIN:$PORT$2"
}
for _ in $(seq 1 100); do
    if api GET /healthz >/dev/null 2>&1; then break; fi
    sleep 0.1
done
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$PID/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$PID/status"; }
mib() { python3 -c "print(f'{$1 / 1024:.1f}')"; }

# Let the runtime settle: idle is the RSS of a started, unused verigated.
sleep 1
IDLE="$(rss_kb)"
echo "| job | files examined | files hashed | from cache | wall time (s) | RSS idle before (MiB) | peak RSS during (MiB) | peak above idle (MiB) | RSS 2 s after (MiB) |"
echo "|---|---|---|---|---|---|---|---|---|"
for job in cold cached cached; do
    before="$(rss_kb)"
    # Reset the high-water mark to the current RSS (clear_refs value 5).
    echo 5 >"/proc/$PID/clear_refs"
    peak="$before"
    t0="$(date +%s.%N)"
    api POST /v1/snapshot >/dev/null
    while :; do
        if ! kill -0 "$PID" 2>/dev/null; then
            echo "verigated exited; log:" >&2
            cat "$WORK/verigated.log" >&2
            exit 1
        fi
        if [ "${NORMAL_PRIORITY:-1}" = 1 ]; then
            for tid in $(ps -L -o tid=,cls=,comm= -p "$PID" | awk '$2 == "IDL" && $3 ~ /^verigate-scan/ {print $1}'); do
                chrt --other -p 0 "$tid" >/dev/null 2>&1 || true
                ionice -c 2 -n 4 -p "$tid" >/dev/null 2>&1 || true
            done
        fi
        r="$(rss_kb)"
        [ "$r" -gt "$peak" ] && peak="$r"
        state="$(api GET /v1/snapshot/progress 2>/dev/null | jq -r '.state // empty' 2>/dev/null || true)"
        case "$state" in done | failed) break ;; esac
        sleep 0.02
    done
    t1="$(date +%s.%N)"
    progress="$(api GET /v1/snapshot/progress)"
    if [ "$state" != done ]; then
        echo "job $job ended $state: $progress" >&2
        exit 1
    fi
    hwm="$(hwm_kb)"
    [ "$hwm" -gt "$peak" ] && peak="$hwm"
    sleep 2
    after="$(rss_kb)"
    seen="$(echo "$progress" | jq -r '.files_seen')"
    hashed="$(echo "$progress" | jq -r '.files_hashed')"
    cached="$(echo "$progress" | jq -r '.files_from_cache')"
    wall="$(python3 -c "print(f'{$t1 - $t0:.2f}')")"
    echo "| $job | $seen | $hashed | $cached | $wall | $(mib "$before") | $(mib "$peak") | $(mib $((peak - IDLE))) | $(mib "$after") |"
done
echo
if [ "${TRIM_PROBE:-0}" = 1 ]; then
    gdb -p "$PID" -batch -ex 'call (void) malloc_stats()' -ex 'call (int) malloc_trim(0)' >/dev/null 2>&1 || echo "gdb failed" >&2
    cp "$WORK/verigated.log" "${TRIM_PROBE_LOG:-/dev/null}"
    sleep 1
    echo "RSS after malloc_trim(0) called through gdb: $(mib "$(rss_kb)") MiB"
fi
echo "idle RSS at start: $(mib "$IDLE") MiB; scan cache: $(stat -c %s "$WORK/data/"scan-cache* | head -1) bytes ($(ls "$WORK/data" | tr '\n' ' '))"
