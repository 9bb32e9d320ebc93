#!/usr/bin/env bash
# Builds the KvmPS test initramfs: busybox-static, the agent (initramfs/init)
# and its few files, as a gzip'd newc cpio. Cached like the kernel under
#   $KVMPS_LINUX_CACHE (default: <repo>/.cache/linux-guest)/initramfs-<hash>.cpio.gz
# Prints the archive path on stdout.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${KVMPS_LINUX_CACHE:-$repo/.cache/linux-guest}"
busybox="${KVMPS_BUSYBOX:-/bin/busybox}"

fail() { echo "linux-guest: $*" >&2; exit 1; }
[ -x "$busybox" ] || fail "$busybox is missing: install busybox-static ('sudo ./build.sh setup')"
file -L "$busybox" 2>/dev/null | grep -q 'statically linked' \
  || ldd "$busybox" 2>&1 | grep -q 'not a dynamic executable' \
  || fail "$busybox is not statically linked: install busybox-static"
command -v cpio >/dev/null || fail "cpio is not installed: run 'sudo ./build.sh setup'"
command -v gcc >/dev/null || fail "gcc is not installed: run 'sudo ./build.sh setup'"

hash="$( { sha256sum "$busybox" "$here/build-initramfs.sh" "$here"/src/*.c; gcc --version | head -n 1
          cd "$here/initramfs" && find . -type f | LC_ALL=C sort | xargs sha256sum; } | sha256sum | cut -c1-16)"
out="$cache/initramfs-$hash.cpio.gz"
if [ -f "$out" ]; then echo "$out"; exit 0; fi

mkdir -p "$cache"
root="$(mktemp -d "$cache/.initramfs-XXXXXX")"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,dev,proc,sys,tmp,etc}
cp -a "$here/initramfs/." "$root/"
cp "$busybox" "$root/bin/busybox"
# AF_VSOCK for the agent: busybox has no vsock support.
gcc -static -Os -Wall -Wextra -Werror -o "$root/bin/vsock" "$here/src/vsock.c" \
  || fail "cannot build src/vsock.c statically (libc6-dev provides the static libc)"
for applet in sh mount dd sha256sum blockdev hexdump dmesg poweroff acpid ifconfig ping stty sync cat ls sleep mv udhcpc timeout; do
  ln -s busybox "$root/bin/$applet"
done

# A newc entry for /dev/console: the kernel opens it for PID 1 before /init
# runs, and a device node cannot be made without root, so it is written by hand.
newc_entry() { # name mode rdevmajor rdevminor
  local name="$1" namesize=$(( ${#1} + 1 ))
  printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
    0 "$2" 0 0 1 0 0 0 0 "$3" "$4" "$namesize" 0
  printf '%s\0' "$name"
  local pad=$(( (4 - (110 + namesize) % 4) % 4 ))
  head -c "$pad" /dev/zero
}
tmp="$out.tmp"
{
  (cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet)
  newc_entry dev/console $((0020600)) 5 1
  newc_entry TRAILER!!! 0 0 0
} | gzip -9n > "$tmp"
mv "$tmp" "$out"
echo "$out"
