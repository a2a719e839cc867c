# The preamble bench/<name>/run.sh scripts share; sourced (`. bench/lib.sh`) after they
# `cd` to the repository root. It defines functions only, and sets nothing until called.
#
#   bench_needs TOOL...        exit 2 naming the first tool that is not installed
#   bench_build BIN...         release-build each of verigated, verigate unless
#                              BENCH_NO_BUILD=1; sets VERIGATED and VERIGATE (in
#                              BENCH_BIN_DIR when set, else target/release)
#   bench_workdir NAME         WORK, a temp dir, and PIDS, the processes to stop: on exit
#                              each PID in PIDS is stopped, then WORK removed
#   free_ports COUNT [pair]    COUNT free loopback ports (pair: P with P+1 free too)
#   wait_port PORT             until something listens on 127.0.0.1:PORT (10 s at most)

bench_needs() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "bench: $tool not found" >&2; exit 2; }
  done
}

bench_build() {
  local bin
  if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    for bin in "$@"; do
      case $bin in
        verigated) cargo build --release -p gateway --bin verigated ;;
        verigate) cargo build --release -p verifier --bin verigate ;;
        *) echo "bench: no binary $bin" >&2; exit 2 ;;
      esac
    done
  fi
  bin=${BENCH_BIN_DIR:-$PWD/target/release}
  VERIGATED=$bin/verigated
  VERIGATE=$bin/verigate
}

bench_workdir() {
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/verigate-bench-$1.XXXXXX")
  PIDS=()
  trap bench_cleanup EXIT
}

bench_cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}

free_ports() {
  python3 - "$@" <<'PY'
import socket, sys
count, pair = int(sys.argv[1]), len(sys.argv) > 2
held, out = [], []
while len(out) < count:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; held.append(s)
    if pair:
        t = socket.socket()
        try:
            t.bind(("127.0.0.1", p + 1)); held.append(t)
        except OSError:
            continue
    out.append(p)
print(" ".join(map(str, out)))
PY
}

wait_port() {
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "bench: nothing listens on 127.0.0.1:$1" >&2
  return 1
}
