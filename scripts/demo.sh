#!/usr/bin/env bash
# The demo of the README. Installs what it needs, builds verigate, and runs the flow
# on this machine with no TEE and no TPM device.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cargo build --release --locked --bins
exec bash scripts/demo-flow.sh
