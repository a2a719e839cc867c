#!/usr/bin/env bash
# Builds the Debian package: bash scripts/package.sh  ->  target/debian/verigate_<version>_<arch>.deb
#
#   bash scripts/package.sh           release binaries (cargo build --release)
#   bash scripts/package.sh --debug   the debug binaries of target/debug (what scripts/test.sh
#                                     checks: no second, minutes-long release build)
#
# The package is assembled with dpkg-deb itself rather than cargo-deb: dpkg-deb and
# dpkg-shlibdeps come with every Debian build machine (dpkg, dpkg-dev), work offline,
# and cost nothing to install, where cargo-deb would be one more tool compiled from
# crates.io before the first package. What goes in:
#   /usr/bin/verigated, /usr/bin/verigate
#   /lib/systemd/system/verigated.service, verigate-storage.service
#   /etc/verigate/verigated.toml                  (a conffile: upgrades keep your edits)
#   /usr/share/man/man1/verigate*.1.gz            (generated from the clap definitions)
#   bash, zsh and fish completions                (likewise)
#   /usr/share/doc/verigate/examples/ima-policy   (copy to /etc/ima/ima-policy)
# Depends: computed by dpkg-shlibdeps from the binaries (libc, libtss2 for verigated).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
case "${1:-}" in
  "") ;;
  --debug) profile=debug ;;
  *) echo "usage: bash scripts/package.sh [--debug]" >&2; exit 2 ;;
esac

for tool in dpkg-deb dpkg-shlibdeps gzip; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "packaging needs $tool; run as root: apt-get install -y dpkg-dev gzip" >&2
    exit 1
  fi
done

if [ "$profile" = release ]; then
  cargo build --release --locked --bins
else
  cargo build --locked --bins
fi
target_dir=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
bin_dir="$target_dir/$profile"

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
arch=$(dpkg --print-architecture)
out_dir="$target_dir/debian"
stage="$out_dir/verigate_${version}_${arch}"
rm -rf "$stage"
mkdir -p "$stage/DEBIAN" "$out_dir"

install -D -m 0755 "$bin_dir/verigated" "$stage/usr/bin/verigated"
install -D -m 0755 "$bin_dir/verigate" "$stage/usr/bin/verigate"
if [ "$profile" = release ]; then
  # The release profile keeps line tables for backtraces; the package does not need them.
  strip --strip-debug "$stage/usr/bin/verigated" "$stage/usr/bin/verigate"
fi

# The units name /usr/local/bin for a hand install; the package installs to /usr/bin.
units="$stage/lib/systemd/system"
mkdir -p "$units"
for unit in verigated.service verigate-storage.service; do
  sed 's#/usr/local/bin/#/usr/bin/#g' "configs/$unit" >"$units/$unit"
  chmod 0644 "$units/$unit"
done

install -D -m 0644 configs/verigated.toml "$stage/etc/verigate/verigated.toml"
echo /etc/verigate/verigated.toml >"$stage/DEBIAN/conffiles"

doc="$stage/usr/share/doc/verigate"
install -D -m 0644 configs/ima-policy "$doc/examples/ima-policy"
install -D -m 0644 README.md "$doc/README.md"
for page in docs/*.md; do
  [ -e "$page" ] && install -D -m 0644 "$page" "$doc/$(basename "$page")"
done
cat >"$doc/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: verigate

Files: *
License: Apache-2.0
 On Debian systems, the full text of the Apache License, Version 2.0 can be found in
 /usr/share/common-licenses/Apache-2.0.
EOF
chmod 0644 "$doc/copyright"

# Man pages and completions from the binaries' own clap definitions.
generated="$out_dir/generated"
rm -rf "$generated"
"$bin_dir/verigated" dist-files "$generated"
"$bin_dir/verigate" dist-files "$generated"
mkdir -p "$stage/usr/share/man/man1"
for page in "$generated"/man/*.1; do
  gzip -9 -n -c "$page" >"$stage/usr/share/man/man1/$(basename "$page").gz"
done
for bin in verigated verigate; do
  install -D -m 0644 "$generated/completions/$bin.bash" \
    "$stage/usr/share/bash-completion/completions/$bin"
  install -D -m 0644 "$generated/completions/_$bin" \
    "$stage/usr/share/zsh/vendor-completions/_$bin"
  install -D -m 0644 "$generated/completions/$bin.fish" \
    "$stage/usr/share/fish/vendor_completions.d/$bin.fish"
done

# Runtime libraries, as dpkg-shlibdeps finds them (it wants a debian/control beside it).
shlibs_dir="$out_dir/shlibs"
mkdir -p "$shlibs_dir/debian"
printf 'Source: verigate\n\nPackage: verigate\nArchitecture: any\n' >"$shlibs_dir/debian/control"
depends=$(cd "$shlibs_dir" && dpkg-shlibdeps -O -e"$stage/usr/bin/verigated" -e"$stage/usr/bin/verigate" 2>/dev/null |
  sed -n 's/^shlibs:Depends=//p')

installed_size=$(du -k -s --exclude=DEBIAN "$stage" | cut -f1)
cat >"$stage/DEBIAN/control" <<EOF
Package: verigate
Version: $version
Architecture: $arch
Maintainer: verigate developers <verigate@users.noreply.github.com>
Installed-Size: $installed_size
Depends: $depends
Recommends: cryptsetup-bin, e2fsprogs, util-linux
Section: net
Priority: optional
Description: attested SNI passthrough gateway for confidential VMs
 verigated runs inside an AMD SEV-SNP or Intel TDX VM and owns port 443: it
 forwards each TLS connection, untouched, to the in-VM service for its SNI, and
 serves an attestation API that binds every service's certificate to one TEE
 report. verigate snapshots and verifies such a VM from the user's machine.
EOF

# Make systemd see new or changed units; enabling them stays the operator's choice
# (see /usr/share/doc/verigate/vm-image.md).
for script in postinst postrm; do
  cat >"$stage/DEBIAN/$script" <<'EOF'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
EOF
  chmod 0755 "$stage/DEBIAN/$script"
done

deb="$out_dir/verigate_${version}_${arch}.deb"
# xz makes the smallest package but takes minutes on the large debug binaries: the
# --debug package (a test artefact) uses fast gzip.
compression=(-Zxz)
[ "$profile" = debug ] && compression=(-Zgzip -z1)
dpkg-deb --root-owner-group "${compression[@]}" --build "$stage" "$deb" >/dev/null
echo "$deb"
