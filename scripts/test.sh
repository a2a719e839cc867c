#!/usr/bin/env bash
# The test command of the README: installs what the tests need, checks formatting and
# lints (a warning fails), then runs every test of the workspace (unit tests, and
# integration tests with real swtpm, HAProxy, nginx, supervisord, TLS clients and servers
# on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

# rustfmt and clippy are rustup components, absent from some minimal toolchains.
# Each pair: the cargo subcommand, then the rustup component that provides it.
for pair in fmt:rustfmt clippy:clippy; do
  subcommand=${pair%%:*} component=${pair#*:}
  if ! cargo "$subcommand" --version >/dev/null 2>&1; then
    if command -v rustup >/dev/null 2>&1; then
      rustup component add "$component"
    else
      echo "verigate's tests need cargo $subcommand; install it with: rustup component add $component" >&2
      exit 1
    fi
  fi
done

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --all-targets --locked
# The Debian package, from the binaries just built: contents, units, default config.
bash scripts/check-package.sh
cargo test --workspace --locked --no-fail-fast -- --test-threads=2
