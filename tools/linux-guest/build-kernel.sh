#!/usr/bin/env bash
# Builds the KvmPS test kernel (an ELF vmlinux) from Debian's linux-source-6.1,
# tinyconfig + kvmps.config + test-host.patch. The result is cached under
#   $KVMPS_LINUX_CACHE (default: <repo>/.cache/linux-guest)/kernel-<hash>/vmlinux
# where <hash> covers the source package version, the config fragment, the patch
# and RECIPE (bump it when this script changes what it builds); a second run with
# the same inputs builds nothing.
# Prints the vmlinux path on stdout; on failure prints the build log tail and exits 1.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${KVMPS_LINUX_CACHE:-$repo/.cache/linux-guest}"
tarball="${KVMPS_LINUX_SOURCE:-/usr/src/linux-source-6.1.tar.xz}"
jobs="${KVMPS_LINUX_JOBS:-$(nproc)}"

RECIPE=1

fail() { echo "linux-guest: $*" >&2; exit 1; }

[ -f "$tarball" ] || fail "kernel source $tarball is missing: install linux-source-6.1 ('sudo ./build.sh setup')"
for tool in make gcc flex bison bc patch xz; do
  command -v "$tool" >/dev/null || fail "'$tool' is not installed: run 'sudo ./build.sh setup'"
done
[ -f /usr/include/libelf.h ] || fail "libelf-dev is not installed: run 'sudo ./build.sh setup'"
[ -f /usr/include/openssl/ssl.h ] || fail "libssl-dev is not installed: run 'sudo ./build.sh setup'"

srcver="$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null || stat -c '%s-%Y' "$tarball")"
hash="$( { echo "recipe $RECIPE source $srcver"; cat "$here/kvmps.config" "$here/test-host.patch"; } | sha256sum | cut -c1-16)"
out="$cache/kernel-$hash"
if [ -f "$out/vmlinux" ]; then
  echo "$out/vmlinux"
  exit 0
fi

mkdir -p "$cache"
work="$cache/work-$hash"
log="$cache/kernel-$hash.log"
rm -rf "$work"
mkdir -p "$work"
echo "linux-guest: building the test kernel (linux-source-6.1 $srcver, $jobs jobs); log: $log" >&2
start=$SECONDS
build() {
  tar -xf "$tarball" -C "$work" --strip-components=1
  cd "$work"
  patch -p1 --no-backup-if-mismatch < "$here/test-host.patch"
  make ARCH=x86_64 tinyconfig
  scripts/kconfig/merge_config.sh -m .config "$here/kvmps.config"
  make ARCH=x86_64 olddefconfig
  # Every option the fragment sets must survive olddefconfig, or the kernel
  # silently lacks a driver the tests expect.
  missing=0
  while IFS= read -r line; do
    case "$line" in
      CONFIG_*=*) grep -qxF "$line" .config || { echo "config: $line did not survive olddefconfig"; missing=1; } ;;
      "# CONFIG_"*" is not set") opt="${line#\# }"; opt="${opt%% *}"
        ! grep -q "^$opt=" .config || { echo "config: $opt should be unset"; missing=1; } ;;
    esac
  done < "$here/kvmps.config"
  [ "$missing" = 0 ] || { echo "config: the fragment does not apply cleanly"; return 1; }
  nice -n 10 make ARCH=x86_64 -j"$jobs" vmlinux
}
# errexit inside the subshell only works outside a conditional context.
set +e
( set -e; build ) > "$log" 2>&1
status=$?
set -e
if [ "$status" -ne 0 ]; then
  echo "linux-guest: kernel build failed; last lines of $log:" >&2
  tail -n 40 "$log" >&2
  exit 1
fi
tmp="$cache/.kernel-$hash.tmp"
rm -rf "$tmp"
mkdir -p "$tmp"
cp "$work/vmlinux" "$work/.config" "$tmp/"
cp "$log" "$tmp/build.log"
mv "$tmp" "$out"
rm -rf "$work"
echo "linux-guest: kernel built in $((SECONDS - start)) s: $out/vmlinux" >&2
echo "$out/vmlinux"
