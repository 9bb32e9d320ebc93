#!/usr/bin/env bash
# KvmPS build entry point for hosts without pwsh. build.ps1 runs the same steps.
#   ./build.sh setup     install the Debian packages (root), pwsh and Pester into .tools/ (idempotent)
#   ./build.sh build     build the solution, publish kvmps-vmm (NativeAOT), kvmps and the module folder into out/,
#                        and the module package out/packages/KvmPS.<version>.nupkg
#   ./build.sh test      setup + build + the RealLinux test kernel (cached), then every xunit suite and the Pester tests;
#                        ends with "N passed, N failed, N skipped"
#   ./build.sh demo      setup + build, then the main job: kvmps apply examples/host.psd1 on the built-in guest
#   ./build.sh bench     the benchmarks against QEMU (docs/benchmarks.md)
#   ./build.sh linux-guest  build the RealLinux test kernel and initramfs (cached; ./build.sh test does it too)
#   ./build.sh fuzz [TARGET|all] [SECONDS]  coverage-guided fuzzing: afl-fuzz on each SharpFuzz target (docs/fuzzing.md);
#                        fails on any crash or hang; TARGET may be a list: manifest:300,qcow2:120
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
OUT="$ROOT/out"
CONFIG=${CONFIGURATION:-Release}
# Project-local tools that set-up installs: pwsh (the PowerShell dotnet tool) and the Pester module.
TOOLS="$ROOT/.tools"
PWSH_VERSION=7.6.10
PESTER_VERSION=5.7.1
PWSH="$TOOLS/pwsh/pwsh"
export PSModulePath="$TOOLS/modules${PSModulePath:+:$PSModulePath}"

# Packages: compilers for the built-in guest and header checks, QEMU as the peer and qemu-img as the qcow2 oracle,
# a real Linux kernel and busybox for the real-guest tests, SeaBIOS for firmware boot, iproute2 for tap/netns tests,
# ACPICA's iasl and acpiexec as the oracle for our ACPI tables (docs/acpi.md), OpenSSH (client and server) for the
# two-host tests of kvmps --host / -HostName (each test host runs its own sshd; docs/remote.md), AFL++ for
# ./build.sh fuzz (docs/fuzzing.md), grub-rescue-pc (a real bootable ISO) and vncsnapshot (a real VNC client) for the
# CD/DVD and display tests (docs/display.md).
# The RealLinux tests' kernel is built from Debian's source (tools/linux-guest, docs/testing.md).
LINUX_GUEST_PACKAGES=(linux-source-6.1 build-essential flex bison bc libelf-dev libssl-dev cpio busybox-static)
PACKAGES=(gcc make libc6-dev xz-utils qemu-system-x86 qemu-utils seabios linux-image-amd64 busybox-static iproute2 socat iputils-ping
          openssh-client openssh-server afl++ nftables dnsmasq-base ipxe-qemu grub-rescue-pc vncsnapshot
          acpica-tools "${LINUX_GUEST_PACKAGES[@]}")

setup() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "setup: all packages present"
  elif [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing packages: ${missing[*]}; run 'sudo ./build.sh setup'" >&2; exit 1
  else
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  setup_jail_user
  setup_powershell
}

# The unprivileged user a jailed kvmps-vmm runs as (docs/confinement.md, "The jail"), in the kvm group so that a guest
# reboot can open /dev/kvm again. Only as root; management jails its VMMs as it by default (KVMPS_VMM_JAIL=off: not).
setup_jail_user() {
  [ "$(id -u)" -eq 0 ] || return 0
  if ! getent passwd kvmps >/dev/null; then
    echo "setup: creating the system user kvmps (the jailed VMM's user)"
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin kvmps \
      || { echo "setup: useradd kvmps failed" >&2; exit 1; }
  fi
  if getent group kvm >/dev/null && ! id -nG kvmps | tr ' ' '\n' | grep -qx kvm; then
    usermod -a -G kvm kvmps || { echo "setup: usermod -a -G kvm kvmps failed" >&2; exit 1; }
  fi
}

# pwsh $PWSH_VERSION as a dotnet tool in .tools/pwsh, Pester $PESTER_VERSION from NuGet into .tools/modules/Pester.
# Idempotent: nothing is fetched once both are there.
setup_powershell() {
  command -v dotnet >/dev/null || { echo "setup: the .NET SDK (dotnet) is not on PATH" >&2; exit 1; }
  if [ "$("$PWSH" -NoProfile -NonInteractive -Command '$PSVersionTable.PSVersion.ToString()' 2>/dev/null)" != "$PWSH_VERSION" ]; then
    echo "setup: installing pwsh $PWSH_VERSION into $TOOLS/pwsh"
    rm -rf "$TOOLS/pwsh"
    dotnet tool install PowerShell --version "$PWSH_VERSION" --tool-path "$TOOLS/pwsh" >/dev/null \
      || { echo "setup: could not install pwsh $PWSH_VERSION (dotnet tool install PowerShell)" >&2; exit 1; }
  fi
  if [ ! -f "$TOOLS/modules/Pester/Pester.psd1" ]; then
    echo "setup: installing Pester $PESTER_VERSION into $TOOLS/modules"
    dotnet restore tools/pwsh-modules/pwsh-modules.csproj --packages "$TOOLS/nuget" -nologo -v:q >/dev/null \
      || { echo "setup: could not restore Pester $PESTER_VERSION from NuGet" >&2; exit 1; }
    mkdir -p "$TOOLS/modules"
    rm -rf "$TOOLS/modules/Pester"
    cp -r "$TOOLS/nuget/pester/$PESTER_VERSION/tools" "$TOOLS/modules/Pester"
  fi
  echo "setup: pwsh $PWSH_VERSION at $PWSH, Pester $PESTER_VERSION in $TOOLS/modules"
}

build() {
  command -v dotnet >/dev/null || { echo "build: the .NET SDK (dotnet) is not on PATH" >&2; exit 1; }
  dotnet build KvmPS.sln -c "$CONFIG" -nologo -clp:NoSummary -v:q
  dotnet publish src/kvmps-vmm -c "$CONFIG" -o "$OUT/bin" -nologo -v:q
  dotnet publish src/KvmPS.Cli -c "$CONFIG" -o "$OUT/bin" -nologo -v:q
  dotnet publish src/KvmPS.PowerShell -c "$CONFIG" -o "$OUT/KvmPS" -nologo -v:q
  # The module carries its programs in bin/, so an installed package needs no KVMPS_VMM or PATH.
  rm -rf "$OUT/KvmPS/bin"
  mkdir -p "$OUT/KvmPS/bin"
  find "$OUT/bin" -maxdepth 1 -type f ! -name '*.pdb' ! -name '*.dbg' -exec cp -p {} "$OUT/KvmPS/bin/" \;
  rm -f "$OUT"/packages/KvmPS.*.nupkg
  dotnet pack tools/KvmPS.Package -o "$OUT/packages" -p:ModuleDirectory="$OUT/KvmPS" -nologo -v:q >/dev/null
  echo "build: kvmps-vmm at $OUT/bin/kvmps-vmm, module at $OUT/KvmPS, package $(ls "$OUT"/packages/KvmPS.*.nupkg)"
}

run_tests() {
  # Every category runs, RealLinux included (its kernel is built by linux_guest before); KVMPS_TEST_FILTER replaces
  # the filters, e.g. 'Category!=RealLinux' for a quick run or 'Category=RealLinux' for that category alone.
  local log passed=0 failed=0 skipped=0 status=0 runs=() proj filter failures
  # The names of failed tests, repeated at the very end: CI keeps only the tail of a long log.
  failures=$(mktemp)
  export KVMPS_VMM="$OUT/bin/kvmps-vmm"
  for proj in tests/*/*.Tests.csproj; do
    if [ -n "${KVMPS_TEST_FILTER:-}" ]; then runs+=("$proj|$KVMPS_TEST_FILTER"); else runs+=("$proj|Category!=RealLinux"); fi
  done
  # The RealLinux boots last and alone: each keeps both cores busy for minutes, and other tests' timeouts must not
  # depend on them.
  [ -n "${KVMPS_TEST_FILTER:-}" ] || runs+=("tests/KvmPS.Engine.Tests/KvmPS.Engine.Tests.csproj|Category=RealLinux")
  for run in "${runs[@]}"; do
    proj=${run%%|*}
    filter=${run#*|}
    log=$(mktemp)
    set +e
    dotnet test "$proj" -c "$CONFIG" --no-build -nologo ${filter:+--filter "$filter"} 2>&1 | tee "$log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
    set -e
    # dotnet test's own summary: "Passed!  - Failed:     0, Passed:    53, Skipped:     0, Total:    53, ..."
    local line
    # Each failure's name with the first lines of its message, which is all a flaky failure leaves behind.
    sed 's/\x1b\[[0-9;]*m//g' "$log" | awk -v proj="$(basename "$proj" .csproj)" '
      /^ +Failed [A-Za-z_][A-Za-z0-9_.]+.* \[[^]]+\]$/ { sub(/^ +/, ""); print proj ": " $0; inmsg = 0; next }
      /^ +Error Message:$/ { inmsg = 1; lines = 0; next }
      /^ +[A-Z][A-Za-z ]+:$/ { inmsg = 0; next }
      inmsg && lines < 6 { sub(/^ +/, ""); print "    " substr($0, 1, 300); lines++ }' >>"$failures" || true
    line=$(grep -E '^(Passed|Failed)!  - Failed:' "$log" | tail -n 1 || true)
    if [ -z "$line" ]; then echo "test: $proj produced no summary" >&2; status=1; failed=$((failed + 1)); fi
    if [ -n "$line" ]; then
      failed=$((failed + $(sed -E 's/.*Failed: *([0-9]+).*/\1/' <<<"$line")))
      passed=$((passed + $(sed -E 's/.*Passed: *([0-9]+).*/\1/' <<<"$line")))
      skipped=$((skipped + $(sed -E 's/.*Skipped: *([0-9]+).*/\1/' <<<"$line")))
    fi
    rm -f "$log"
  done
  # Pester, in the pwsh that set-up installed, against the module just published to out/KvmPS.
  if [ ! -x "$PWSH" ] || [ ! -f "$TOOLS/modules/Pester/Pester.psd1" ]; then
    echo "test: pwsh ($PWSH) or Pester ($TOOLS/modules/Pester) is missing: run './build.sh setup'; the Pester tests cannot run" >&2
    status=1; failed=$((failed + 1))
  else
    log=$(mktemp)
    set +e
    "$PWSH" -NoProfile -NonInteractive -File build.ps1 -Task Pester 2>&1 | tee "$log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
    set -e
    # build.ps1's own summary: "pester: N passed, N failed, N skipped"
    sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '^ *\[-\] ' | sed 's/^/Pester: /' >>"$failures" || true
    line=$(grep -E '^pester: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$log" | tail -n 1 || true)
    if [ -z "$line" ]; then echo "test: the Pester run produced no summary" >&2; status=1; failed=$((failed + 1)); fi
    if [ -n "$line" ]; then
      passed=$((passed + $(sed -E 's/^pester: ([0-9]+) passed.*/\1/' <<<"$line")))
      failed=$((failed + $(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$line")))
      skipped=$((skipped + $(sed -E 's/.* ([0-9]+) skipped$/\1/' <<<"$line")))
    fi
    rm -f "$log"
  fi
  if [ -s "$failures" ]; then echo "failed tests:"; sed 's/^/  /' "$failures"; fi
  rm -f "$failures"
  if [ "$skipped" -gt 0 ]; then echo "$passed passed, $failed failed, $skipped skipped"; else echo "$passed passed, $failed failed"; fi
  return $status
}

# The RealLinux tests' guest: kernel and initramfs from tools/linux-guest, cached under .cache/linux-guest by a hash
# of their inputs (nothing is rebuilt when they are unchanged). A failed build fails the test command with its log tail.
linux_guest() {
  local kernel initrd
  kernel=$(tools/linux-guest/build-kernel.sh) || { echo "test: the RealLinux test kernel did not build" >&2; return 1; }
  initrd=$(tools/linux-guest/build-initramfs.sh) || { echo "test: the RealLinux test initramfs did not build" >&2; return 1; }
  echo "test: RealLinux guest $kernel, $initrd"
}

# Coverage-guided fuzzing (docs/fuzzing.md): tests/KvmPS.Fuzz built into out/fuzz/bin, the KvmPS assemblies there
# instrumented by SharpFuzz's command-line tool (a dotnet tool in .tools/sharpfuzz), then afl-fuzz on each target for
# SECONDS from its seed corpus tests/KvmPS.Fuzz/corpus/TARGET; findings in out/fuzz/findings/TARGET. One line per
# target with executions, executions/s, crashes and hangs; any crash or hang fails the command and replays the input.
SHARPFUZZ_VERSION=2.3.0
FUZZ_ASSEMBLIES=(KvmPS.Engine KvmPS.Storage KvmPS.Management KvmPS.Contract)
fuzz() {
  local which=${1:-all} seconds=${2:-600} bin="$OUT/fuzz/bin" targets t dir stats failed=0
  local sharpfuzz="$TOOLS/sharpfuzz/sharpfuzz"
  command -v afl-fuzz >/dev/null || { echo "fuzz: afl-fuzz is missing: run 'sudo ./build.sh setup' (Debian package afl++)" >&2; return 1; }
  if ! "$sharpfuzz" 2>&1 | grep -qi usage; then
    rm -rf "$TOOLS/sharpfuzz"
    dotnet tool install SharpFuzz.CommandLine --version "$SHARPFUZZ_VERSION" --tool-path "$TOOLS/sharpfuzz" >/dev/null \
      || { echo "fuzz: could not install SharpFuzz.CommandLine $SHARPFUZZ_VERSION (dotnet tool)" >&2; return 1; }
  fi
  # A fresh output folder: sharpfuzz rewrites the assemblies in place and must see each one uninstrumented.
  rm -rf "$bin" "$OUT/fuzz/plain"
  dotnet build tests/KvmPS.Fuzz -c "$CONFIG" -o "$bin" -nologo -clp:NoSummary -v:q >/dev/null
  # An uninstrumented copy replays findings (instrumented code needs afl-fuzz's coverage map).
  cp -r "$bin" "$OUT/fuzz/plain"
  for t in "${FUZZ_ASSEMBLIES[@]}"; do "$sharpfuzz" "$bin/$t.dll" || return 1; done
  "$sharpfuzz" "$bin/KvmPS.Fuzz.dll" KvmPS.Fuzz.Targets.SelfTestTarget || return 1  # the planted bug only, not the harness
  # TARGET: one name, all, or a comma list whose items may carry their own seconds (manifest:300,qcow2:300).
  if [ "$which" = all ]; then mapfile -t targets < <(dotnet "$bin/KvmPS.Fuzz.dll" list); else IFS=, read -r -a targets <<<"$which"; fi
  # In-process (SharpFuzz's persistent loop), no core dumps wanted, a 1 GiB GC heap so an unbounded allocation fails as
  # OutOfMemoryException (a crash) instead of swapping; 2 s per input before afl-fuzz counts a hang.
  export AFL_SKIP_BIN_CHECK=1 AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1
  export DOTNET_GCHeapHardLimit=0x40000000 DOTNET_TieredPGO=0 DOTNET_DbgEnableMiniDump=0
  local item secs
  for item in "${targets[@]}"; do
    t=${item%%:*}
    secs=$seconds
    [ "$t" = "$item" ] || secs=${item#*:}
    dir="$OUT/fuzz/findings/$t"
    rm -rf "$dir"
    mkdir -p "$dir"
    [ -d "tests/KvmPS.Fuzz/corpus/$t" ] || { echo "fuzz: no corpus tests/KvmPS.Fuzz/corpus/$t" >&2; return 1; }
    # On a loaded machine afl-fuzz's dry run sometimes sees an empty coverage map for the first input ("No
    # instrumentation detected"; twice in a row once, 2026-12-06, with a build running beside it); that start-up
    # problem is retried up to twice, anything else is a failure.
    local try
    for try in 1 2 3; do
      rm -rf "$dir/default"
      afl-fuzz -i "tests/KvmPS.Fuzz/corpus/$t" -o "$dir" -V "$secs" -t 2000 -m none \
        -- dotnet "$bin/KvmPS.Fuzz.dll" "$t" >"$dir/afl.log" 2>&1 && break
      grep -q "No instrumentation detected" "$dir/afl.log" && [ "$try" != 3 ] || try=failed
      [ "$try" = failed ] && break
      echo "fuzz: $t: afl-fuzz saw no coverage on its first run; trying once more" >&2
    done
    if [ "$try" = failed ]; then
      echo "fuzz: afl-fuzz failed on $t:" >&2; grep -v "Fuzzing test case" "$dir/afl.log" | tail -n 20 >&2; failed=1; continue
    fi
    stats="$dir/default/fuzzer_stats"
    local execs rate crashes hangs corpus
    execs=$(awk -F' *: *' '$1=="execs_done"{print $2}' "$stats")
    crashes=$(awk -F' *: *' '$1=="saved_crashes"{print $2}' "$stats")
    hangs=$(awk -F' *: *' '$1=="saved_hangs"{print $2}' "$stats")
    corpus=$(awk -F' *: *' '$1=="corpus_count"{print $2}' "$stats")
    # Over the whole run: execs_per_sec in fuzzer_stats is the last minute's rate.
    rate=$(( execs / secs ))
    echo "fuzz: $t: $execs executions in ${secs} s ($rate/s), $crashes crashes, $hangs hangs, corpus $corpus"
    if [ "$crashes" != 0 ] || [ "$hangs" != 0 ]; then
      failed=1
      echo "fuzz: $t: findings in $dir/default/crashes and $dir/default/hangs; replay:" >&2
      [ "$crashes" = 0 ] || dotnet "$OUT/fuzz/plain/KvmPS.Fuzz.dll" replay "$t" "$dir/default/crashes" >&2 || true
    fi
  done
  return $failed
}

# The main job: provision the example manifest on the built-in default guest, then show the VMs running.
demo() {
  "$OUT/bin/kvmps" apply examples/host.psd1
  "$OUT/bin/kvmps" vm list
}

case "${1:-}" in
  setup) setup "${PACKAGES[@]}" ;;
  build) build ;;
  test) setup "${PACKAGES[@]}"; build; linux_guest; run_tests ;;
  linux-guest) setup "${LINUX_GUEST_PACKAGES[@]}"; linux_guest ;;
  fuzz) setup "${PACKAGES[@]}"; fuzz "${@:2}" ;;
  demo) setup "${PACKAGES[@]}"; build; demo ;;
  bench) setup "${PACKAGES[@]}"; build; dotnet run --project bench/KvmPS.Bench -c "$CONFIG" -- "${@:2}" ;;  # [--runs N] [--figures 1,3]
  *) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
