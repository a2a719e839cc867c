#!/usr/bin/env bash
# Builds the Debian package from the debug binaries (scripts/package.sh --debug: no
# release build) and checks it without installing it on this machine: its contents and
# control fields (dpkg-deb -c/-I), its units (systemd-analyze verify, on an extracted
# copy; no systemd runs, nothing is started), the storage unit's ordering before
# verigated, and `verigated check-config` on the default config as installed.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "check-package: $*" >&2; exit 1; }
for tool in dpkg-deb systemd-analyze; do
  command -v "$tool" >/dev/null 2>&1 ||
    fail "needs $tool (apt-get install -y dpkg systemd)"
done

deb=$(bash scripts/package.sh --debug | tail -n1)
[ -f "$deb" ] || fail "scripts/package.sh printed no package ($deb)"

contents=$(dpkg-deb -c "$deb" | awk '{print $6}')
for path in ./usr/bin/verigated ./usr/bin/verigate \
  ./lib/systemd/system/verigated.service ./lib/systemd/system/verigate-storage.service \
  ./etc/verigate/verigated.toml ./usr/share/doc/verigate/examples/ima-policy \
  ./usr/share/doc/verigate/copyright \
  ./usr/share/man/man1/verigated.1.gz ./usr/share/man/man1/verigate.1.gz \
  ./usr/share/man/man1/verigate-verify.1.gz ./usr/share/man/man1/verigated-storage-open.1.gz \
  ./usr/share/man/man1/verigated-storage-migrate.1.gz \
  ./usr/share/bash-completion/completions/verigate ./usr/share/bash-completion/completions/verigated \
  ./usr/share/zsh/vendor-completions/_verigate ./usr/share/fish/vendor_completions.d/verigated.fish; do
  grep -qx -- "$path" <<<"$contents" || fail "$deb lacks $path"
done
[ "$(dpkg-deb -f "$deb" Package)" = verigate ] || fail "Package is not verigate"
dpkg-deb -f "$deb" Depends | grep -q libtss2-esys || fail "Depends lacks libtss2-esys (verigated's TPM library)"
[ "$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)" = /etc/verigate/verigated.toml ] ||
  fail "the default config is not the package's one conffile"

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
dpkg-deb -x "$deb" "$root"

# The default config, as installed, is valid.
"$root/usr/bin/verigated" check-config "$root/etc/verigate/verigated.toml"

# systemd-analyze verify checks that each Exec* program exists: point the units at the
# extracted binaries (only that path changes), then any warning fails the check.
units="$root/verify-units"
mkdir "$units"
for unit in verigated.service verigate-storage.service; do
  sed "s#/usr/bin/verigate#$root/usr/bin/verigate#g" "$root/lib/systemd/system/$unit" >"$units/$unit"
done
report=$(systemd-analyze verify --man=no "$units"/*.service 2>&1) ||
  fail "systemd-analyze verify: $report"
[ -z "$report" ] || fail "systemd-analyze verify warns: $report"

# The storage unit opens the data dir before verigated, and enabling it makes verigated
# require it.
storage="$root/lib/systemd/system/verigate-storage.service"
for line in Before=verigated.service RequiredBy=verigated.service RequiresMountsFor=/var/lib/verigate \
  'ExecStart=/usr/bin/verigated --config /etc/verigate/verigated.toml storage open'; do
  grep -qx -- "$line" "$storage" || fail "verigate-storage.service lacks \`$line\`"
done
grep -qx After=verigate-storage.service "$root/lib/systemd/system/verigated.service" ||
  fail "verigated.service is not ordered after verigate-storage.service"

echo "check-package: $deb: contents, control, conffile, units and default config OK"
