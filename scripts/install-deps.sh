#!/usr/bin/env bash
# Installs what building, testing and the demo need on a fresh Debian/Ubuntu machine.
# Run as root, or as a user with sudo (it uses apt-get through sudo then); otherwise it
# prints the one command to run.
set -euo pipefail

packages=(
  build-essential pkg-config libtss2-dev   # tss-esapi (TPM collection in verigated)
  swtpm swtpm-tools tpm2-tools             # a real software TPM 2.0 for tests and the demo
  haproxy nginx libnginx-mod-stream        # load balancer in front, benchmark peers
  pebble                                   # ACME test CA + pebble-challtestsrv (gateway/tests/acme_pebble.rs)
  supervisor                               # app control tests
  cryptsetup-bin                           # LUKS2 container tests
  openssl curl python3                     # peers and test-vector scripts
  dpkg-dev systemd                         # scripts/package.sh, systemd-analyze verify of the units
  e2fsprogs util-linux procps              # chattr, unshare/mount, kill in tests
  bsdutils                                 # script: a pseudo-terminal for the colour test
  linux-libc-dev                           # <linux/sev-guest.h> for the sev-guest driver stand-in
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  # A fresh Debian image run as root often has no sudo: use it only when not root.
  as_root=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      as_root=(sudo DEBIAN_FRONTEND=noninteractive)
    else
      echo "verigate needs these packages; run as root:" >&2
      echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
      exit 1
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${as_root[@]}" apt-get update -q
  "${as_root[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "verigate needs a Rust toolchain (cargo); install it with rustup: https://rustup.rs" >&2
  exit 1
fi
