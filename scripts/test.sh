#!/usr/bin/env bash
# The test command of the README: installs what the tests need, then runs every test
# of the workspace (unit tests, and integration tests with real swtpm, HAProxy, nginx,
# supervisord, TLS clients and servers on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cargo build --workspace --all-targets --locked
cargo test --workspace --locked --no-fail-fast -- --test-threads=2
