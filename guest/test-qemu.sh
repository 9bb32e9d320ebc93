#!/usr/bin/env bash
# Boots the built-in guest under QEMU (PVH entry) and checks its console output.
# Usage: guest/test-qemu.sh [path/to/kvmps-guest.elf]
# Env: QEMU (default qemu-system-x86_64), ACCEL (default: kvm if /dev/kvm is usable, else tcg),
#      TIMEOUT (seconds per boot, default 60), KEEP=1 keeps the work directory.
# Exits non-zero if any check fails.
set -u

here=$(cd "$(dirname "$0")" && pwd)
elf=${1:-$here/build/kvmps-guest.elf}
qemu=${QEMU:-qemu-system-x86_64}
if [ -z "${ACCEL:-}" ]; then
    if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then ACCEL=kvm; else ACCEL=tcg; fi
fi
tmo=${TIMEOUT:-60}
work=$(mktemp -d)
fails=0
pass=0

cleanup() { [ "${KEEP:-0}" = 1 ] || rm -rf "$work"; }
trap cleanup EXIT

if [ ! -f "$elf" ]; then
    make -C "$here" >/dev/null || { echo "FAIL: build"; exit 1; }
fi
command -v "$qemu" >/dev/null || { echo "FAIL: $qemu not found"; exit 1; }

ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fails=$((fails + 1)); echo "FAIL $*"; }

# qemu_cmd MACHINE SMP MEM APPEND -> sets the array $cmd
qemu_cmd() {
    cmd=("$qemu" -M "$1" -smp "$2" -m "$3" -kernel "$elf" -append "$4"
        -display none -serial stdio -no-reboot -accel "$ACCEL"
        -device isa-debug-exit,iobase=0xf4,iosize=0x01)
}

# run_batch NAME MACHINE SMP MEM APPEND -> sets $out (console text without CRs) and $rc
run_batch() {
    local name=$1
    shift
    qemu_cmd "$@"
    timeout "$tmo" "${cmd[@]}" </dev/null >"$work/$name.raw" 2>"$work/$name.err"
    rc=$?
    tr -d '\r' <"$work/$name.raw" >"$work/$name.out"
    out=$(cat "$work/$name.out")
}

# expect_line NAME REGEX: a whole console line must match
expect_line() {
    if grep -Eq -- "^$2\$" "$work/$1.out"; then ok "$1: /$2/"; else
        bad "$1: no line matching /$2/"
        sed 's/^/    | /' "$work/$1.out" | tail -n 12
    fi
}

expect_rc() {
    if [ "$2" = "$3" ]; then ok "$1: exit status $3"; else bad "$1: exit status $2, expected $3"; fi
}

check_boot() { # NAME MACHINE SMP MEM ; runs kvmps.run=info,exit 3
    local name=$1 machine=$2 smp=$3 mem=$4
    run_batch "$name" "$machine" "$smp" "$mem" "kvmps.run=info,exit 3"
    expect_rc "$name" "$rc" 7
    expect_line "$name" "KvmPS built-in guest v1"
    expect_line "$name" "cpus: acpi=$smp mp=[0-9]+ online=$smp max=$smp"
    expect_line "$name" "memory: $mem MiB"
    expect_line "$name" "ready"
    expect_line "$name" "> info"
    expect_line "$name" "> exit 3"
    local n
    n=$(grep -Ec "^cpus: acpi=$smp mp=[0-9]+ online=$smp max=$smp\$" "$work/$name.out")
    [ "$n" = 2 ] && ok "$name: info reprints the cpus line" || bad "$name: cpus line count $n, expected 2"
}

check_boot pc-smp1-256m pc 1 256
check_boot pc-smp4-1024m pc 4 1024
check_boot microvm-smp4-256m microvm 4 256
check_boot microvm-smp1-1024m microvm 1 1024

# Interactive session over stdin: echo, backspace, commands, exit code.
interactive() { # NAME MACHINE APPEND
    local name=$1 machine=$2 append=$3
    local fifo="$work/$name.in"
    mkfifo "$fifo"
    qemu_cmd "$machine" 2 256 "$append"
    timeout "$tmo" "${cmd[@]}" <"$fifo" >"$work/$name.raw" 2>"$work/$name.err" &
    local pid=$!
    exec 3>"$fifo"
    wait_out() { # REGEX: wait until the console output contains it
        local i
        for ((i = 0; i < tmo * 10; i++)); do
            tr -d '\r' <"$work/$name.raw" | grep -Eq -- "$1" && return 0
            kill -0 "$pid" 2>/dev/null || return 1
            sleep 0.1
        done
        return 1
    }
    wait_out '^> $|> $' || true
    printf 'inff\x7fo\r' >&3
    wait_out '^memory: 256 MiB$' || true
    printf 'hello world\r' >&3
    wait_out '^unknown command: hello world$' || true
    printf 'pio 1000\r' >&3
    wait_out '^pio: done 1000$' || true
    printf 'exit 9\r' >&3
    wait "$pid"
    rc=$?
    exec 3>&-
    tr -d '\r' <"$work/$name.raw" >"$work/$name.out"
    expect_rc "$name" "$rc" 19
    expect_line "$name" "> inff.*o"
    expect_line "$name" "cpus: acpi=2 mp=[0-9]+ online=2 max=2"
    expect_line "$name" "> hello world"
    expect_line "$name" "unknown command: hello world"
    expect_line "$name" "pio: done 1000"
    expect_line "$name" "> exit 9"
    if grep -aq $'inff\b \bo' "$work/$name.raw"; then ok "$name: backspace echo"; else bad "$name: backspace echo"; fi
}

interactive pc-interactive pc ""
interactive microvm-interactive microvm ""
interactive pc-interactive-poll pc "kvmps.poll"

# poweroff (ACPI S5) must end QEMU with status 0 and no failure message.
for m in pc microvm; do
    run_batch "$m-poweroff" "$m" 2 256 "kvmps.run=poweroff,exit 5"
    expect_rc "$m-poweroff" "$rc" 0
    expect_line "$m-poweroff" "> poweroff"
    if grep -q "poweroff: failed" "$work/$m-poweroff.out"; then bad "$m-poweroff: failed message"; else ok "$m-poweroff: no failure"; fi
done

# crash (triple fault) and reboot with -no-reboot: QEMU exits with status 0.
run_batch pc-crash pc 1 256 "kvmps.run=crash,exit 5"
expect_rc pc-crash "$rc" 0
run_batch pc-reboot pc 1 256 "kvmps.run=reboot,exit 5"
expect_rc pc-reboot "$rc" 0

echo "passed $pass, failed $fails (accel=$ACCEL)"
[ "$fails" = 0 ]
