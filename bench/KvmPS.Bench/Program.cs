using System.Diagnostics;
using System.Globalization;
using System.Text;
using KvmPS.Bench;

// KvmPS benchmarks against QEMU on the same host, in the same run (docs/benchmarks.md). Run: ./build.sh bench [--runs N]
int runs = 10;
var figures = new HashSet<string> { "1", "1j", "1jn", "2", "3", "3j", "3c", "4", "5", "6", "7", "8a", "8b", "8c", "8d", "8e", "8f", "8g", "9a", "9b", "9c", "9d", "10a", "10b", "10c", "10d", "10e", "10f", "10g", "10h", "10i", "10j", "11a", "11b", "11c", "11d" };
bool partial = false;
for (int i = 0; i < args.Length; i++)
{
    if (args[i] == "--runs" && i + 1 < args.Length && int.TryParse(args[++i], out int r) && r > 0) runs = r;
    else if (args[i] == "--figures" && i + 1 < args.Length)
    {
        // A bare number names all its lettered figures: "10" is 10a, 10b, ...
        var all = figures;
        figures = args[++i].Split(',').SelectMany(f => all.Where(id => new string(id.TakeWhile(char.IsAsciiDigit).ToArray()) == f).Append(f)).ToHashSet();
        partial = true;
    }
    else { Console.Error.WriteLine($"usage: KvmPS.Bench [--runs N] [--figures 1,3,8a,10,11,...]   (unknown argument '{args[i]}')"); return 2; }
}

string vmm = Environment.GetEnvironmentVariable("KVMPS_VMM") ?? Path.Combine(Host.RepoRoot, "out", "bin", "kvmps-vmm");
string guest = Path.Combine(Host.RepoRoot, "guest", "build", "kvmps-guest.elf");
string? qemu = Host.Which("qemu-system-x86_64");
string? gcc = Host.Which("gcc");

var missing = new List<string>();
if (qemu is null) missing.Add("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86, or ./build.sh setup)");
if (gcc is null) missing.Add("no C compiler: gcc is not on PATH (apt-get install gcc)");
if (!File.Exists(vmm)) missing.Add($"{vmm} does not exist (./build.sh build)");
if (!File.Exists(guest)) missing.Add($"{guest} does not exist (make -C guest)");
try { using var kvm = File.Open("/dev/kvm", FileMode.Open, FileAccess.ReadWrite); }
catch (Exception e) { missing.Add($"/dev/kvm is not usable: {e.Message}"); }
if (missing.Count > 0)
{
    Console.Error.WriteLine("kvmps bench: cannot run, prerequisites missing:");
    foreach (var m in missing) Console.Error.WriteLine("  - " + m);
    return 2;
}

string work = Directory.CreateTempSubdirectory("kvb").FullName;
var results = new List<FigureResult>();
string[] Qemu(string machine, int smp, int mib, string append, params string[] extra) =>
[
    "-M", machine, "-accel", "kvm", "-smp", smp.ToString(), "-m", mib.ToString(), "-nodefaults", "-no-user-config",
    "-display", "none", "-serial", "stdio", "-no-reboot", "-kernel", guest, "-append", append,
    "-device", "isa-debug-exit,iobase=0xf4,iosize=0x01", .. extra,
];
string[] Kvmps(int vcpus, int mib, string cmdline, params string[] extra) =>
    ["--vcpus", vcpus.ToString(), "--memory", $"{mib}M", "--cmdline", cmdline, .. extra];

List<double> Repeat(int n, Func<double> sample)
{
    var list = new List<double>();
    sample(); // warm the page cache and the binary; not counted
    for (int i = 0; i < n; i++) list.Add(sample());
    return list;
}

// Start-up samples of two VMMs taken turn about (kvmps, QEMU, kvmps, …): this host's speed drifts by tens of percent
// within a minute, and back-to-back blocks of one VMM then the other would put that drift into the ratio.
(List<double> A, List<double> B) Alternate(int n, Func<double> a, Func<double> b)
{
    var (listA, listB) = (new List<double>(), new List<double>());
    a(); b(); // warm the page cache and the binaries; not counted
    for (int i = 0; i < n; i++) { listA.Add(a()); listB.Add(b()); }
    return (listA, listB);
}

Console.Error.WriteLine($"kvmps bench: {runs} runs per figure; host: {Host.HostDescription()}");

// 1. Start-up: exec -> first guest console byte.
double StartupSample(string file, string[] a)
{
    var (ms, p) = Host.TimeToFirstByte(file, a);
    Host.Kill(p);
    return ms;
}
// kvmps-vmm (with extra flags) against QEMU -M microvm, both booting the built-in guest to its first byte, turn about.
(List<double> Ours, List<double> Peer) StartupAgainstMicrovm(params string[] extra) =>
    Alternate(runs, () => StartupSample(vmm, Kvmps(1, 256, "kvmps.run=exit 0", extra)), () => StartupSample(qemu!, Qemu("microvm", 1, 256, "kvmps.run=exit 0")));
if (figures.Contains("1"))
{
Console.Error.WriteLine("figure 1: start-up");
var (f1kRuns, f1mRuns) = StartupAgainstMicrovm();
var (f1k, f1m) = (Stats.Of(f1kRuns), Stats.Of(f1mRuns));
var f1p = Stats.Of(Repeat(runs, () => StartupSample(qemu!, Qemu("pc", 1, 256, "kvmps.run=exit 0"))));
results.Add(new("1", "Start-up: exec → first guest console byte", "ms", f1k, "QEMU -M microvm", f1m, "≤ 1/5 of QEMU and ≤ 10 ms median"));
results.Add(new("1b", "Start-up: exec → first guest console byte", "ms", f1k, "QEMU -M pc", f1p, "≤ 1/5 of QEMU"));
}
// 1j/3j: the same with the jail on (docs/confinement.md: a private root, the kvmps user, no capabilities, a cgroup);
// the seccomp filters are on in every figure. It needs root and the kvmps user that ./build.sh setup makes.
string[]? jail = Environment.IsPrivilegedProcess && File.ReadLines("/etc/passwd").Any(l => l.StartsWith("kvmps:", StringComparison.Ordinal))
    ? ["--jail", "on", "--user", "kvmps", "--cgroup", "kvmps/bench"] : null;
if ((figures.Contains("1j") || figures.Contains("1jn") || figures.Contains("3j")) && jail is null)
    Console.Error.WriteLine("figures 1j, 1jn, 3j: skipped: the jail needs root and the kvmps user (./build.sh setup)");
if (figures.Contains("1j") && jail is not null)
{
Console.Error.WriteLine("figure 1j: start-up, jailed");
var (f1jRuns, f1jmRuns) = StartupAgainstMicrovm(jail);
var (f1j, f1jm) = (Stats.Of(f1jRuns), Stats.Of(f1jmRuns));
results.Add(new("1j", "Start-up: exec → first guest console byte, kvmps-vmm jailed (--jail on --user kvmps --cgroup)", "ms", f1j, "QEMU -M microvm", f1jm, "≤ 1/5 of QEMU and ≤ 10 ms median"));
}
// 1jn: the jail without its cgroup, so the table shows what the cgroup move (an RCU grace period on cgroup v1) costs.
if (figures.Contains("1jn") && jail is not null)
{
Console.Error.WriteLine("figure 1jn: start-up, jailed without a cgroup");
var (f1jnRuns, f1jnmRuns) = StartupAgainstMicrovm(jail[..^2]);
results.Add(new("1jn", "Start-up: exec → first guest console byte, kvmps-vmm jailed without its cgroup (--jail on --user kvmps)", "ms", Stats.Of(f1jnRuns), "QEMU -M microvm", Stats.Of(f1jnmRuns), "— (shows the cgroup's share of 1j)"));

}

// 2. Control readiness: exec -> control socket answers; and CPU spent by then.
var cpuK = new List<double>(); var cpuQ = new List<double>();
double ReadySample(bool kvmps, List<double> cpu)
{
    string sock = Path.Combine(work, $"r{Guid.NewGuid():N}.sock");
    var clock = Stopwatch.StartNew();
    var p = kvmps
        ? Host.Start(vmm, Kvmps(1, 256, "", "--control-socket", sock))
        : Host.Start(qemu!, Qemu("microvm", 1, 256, "", "-qmp", $"unix:{sock},server=on,wait=off"));
    try
    {
        double ms = Host.WaitForSocketAnswer(sock, kvmps ? "{\"request\":\"ping\"}" : null, clock, TimeSpan.FromSeconds(30));
        cpu.Add(Host.CpuMs(p.Id));
        return ms;
    }
    finally { Host.Kill(p); }
}
if (figures.Contains("2"))
{
Console.Error.WriteLine("figure 2: control readiness");
var f2k = Stats.Of(Repeat(runs, () => ReadySample(true, cpuK)));
var f2q = Stats.Of(Repeat(runs, () => ReadySample(false, cpuQ)));
results.Add(new("2", "Control readiness: exec → API socket answers", "ms", f2k, "QEMU QMP (microvm)", f2q, "—"));
results.Add(new("2c", "CPU time spent up to API socket", "CPU ms", Stats.Of(cpuK.Skip(1).ToList()), "QEMU QMP (microvm)", Stats.Of(cpuQ.Skip(1).ToList()), "≤ 8 CPU ms (Firecracker)"));

}

// 3. Memory overhead: RSS beyond guest RAM, 256 MiB / 2 vCPUs, guest idle at its prompt.
var privK = new List<double>(); var privQ = new List<double>();
double MemorySample(bool kvmps, string[]? extra = null)
{
    var clock = Stopwatch.StartNew();
    var p = kvmps ? Host.Start(vmm, Kvmps(2, 256, "", extra ?? [])) : Host.Start(qemu!, Qemu("microvm", 2, 256, ""));
    try
    {
        Host.WaitForOutput(p, "ready", clock, TimeSpan.FromSeconds(30));
        // Idle: past kvmps-vmm's drop of its start-up pages, 1 s after its VM starts (docs/benchmarks.md, figure 3).
        Thread.Sleep(1500);
        var (rssMiB, privateMiB) = Host.Overhead(p.Id, 256UL << 20);
        (kvmps ? privK : privQ).Add(privateMiB);
        return rssMiB;
    }
    finally { Host.Kill(p); }
}
if (figures.Contains("3"))
{
Console.Error.WriteLine("figure 3: memory overhead");
var f3k = Stats.Of(Repeat(runs, () => MemorySample(true)));
var f3q = Stats.Of(Repeat(runs, () => MemorySample(false)));
results.Add(new("3", "VMM memory overhead (RSS − guest RAM RSS), 256 MiB, 2 vCPUs", "MiB", f3k, "QEMU -M microvm", f3q, "≤ 5 MiB and ≤ 1/5 of QEMU"));
results.Add(new("3p", "… of which private to the VMM (not shared file pages)", "MiB", Stats.Of(privK.Skip(1).ToList()), "QEMU -M microvm", Stats.Of(privQ.Skip(1).ToList()), "—"));
}
if (figures.Contains("3j") && jail is not null)
{
Console.Error.WriteLine("figure 3j: memory overhead, jailed");
privK.Clear(); privQ.Clear();
var f3j = Stats.Of(Repeat(runs, () => MemorySample(true, jail)));
var f3jq = Stats.Of(Repeat(runs, () => MemorySample(false)));
results.Add(new("3j", "VMM memory overhead (RSS − guest RAM RSS), 256 MiB, 2 vCPUs, kvmps-vmm jailed", "MiB", f3j, "QEMU -M microvm", f3jq, "≤ 5 MiB"));

}

// 3c: as 3, after the VMM has answered control requests, as a VMM under management has: kvmps-vmm `status` and
// `describe`, QEMU `query-status` and `query-cpus-fast` over QMP; measured 2.5 s later, past the drop kvmps-vmm makes
// once its control socket has been quiet for a second (Vmm/StartupPages.cs).
double MemoryAfterRequestsSample(bool kvmps)
{
    string sock = Path.Combine(work, $"m{Guid.NewGuid():N}.sock");
    var clock = Stopwatch.StartNew();
    var p = kvmps ? Host.Start(vmm, Kvmps(2, 256, "", "--control-socket", sock))
        : Host.Start(qemu!, Qemu("microvm", 2, 256, "", "-qmp", $"unix:{sock},server=on,wait=off"));
    try
    {
        Host.WaitForOutput(p, "ready", clock, TimeSpan.FromSeconds(30));
        Thread.Sleep(1500);
        if (kvmps)
        {
            using var control = LineClient.WaitFor(sock, Stopwatch.StartNew(), TimeSpan.FromSeconds(10));
            control.Request("{\"request\":\"status\"}").Dispose();
            control.Request("{\"request\":\"describe\"}").Dispose();
        }
        else
        {
            using var qmp = Qmp.WaitFor(sock, Stopwatch.StartNew(), TimeSpan.FromSeconds(10));
            qmp.Execute("query-status").Dispose();
            qmp.Execute("query-cpus-fast").Dispose();
        }
        Thread.Sleep(2500);
        return Host.Overhead(p.Id, 256UL << 20).RssMiB;
    }
    finally { Host.Kill(p); }
}
if (figures.Contains("3c"))
{
Console.Error.WriteLine("figure 3c: memory overhead after control requests");
var (f3cRuns, f3cqRuns) = Alternate(runs, () => MemoryAfterRequestsSample(true), () => MemoryAfterRequestsSample(false));
results.Add(new("3c", "VMM memory overhead (RSS − guest RAM RSS), 256 MiB, 2 vCPUs, 2.5 s after two control requests (status, describe; QMP query-status, query-cpus-fast)", "MiB", Stats.Of(f3cRuns), "QEMU -M microvm", Stats.Of(f3cqRuns), "≤ 5 MiB"));
}

// 4. PIO exit round-trip: N `out` instructions to a userspace-handled port.
const int PioExits = 20000;
double PioSample()
{
    // The difference between two runs of different length cancels boot and exit costs.
    double Run(int n)
    {
        var clock = Stopwatch.StartNew();
        var p = Host.Start(vmm, Kvmps(1, 256, $"kvmps.run=pio {n},exit 0"));
        try
        {
            var seen = new StringBuilder();
            var start = Host.WaitForOutput(p, $"> pio {n}", clock, TimeSpan.FromSeconds(60), seen);
            var end = Host.WaitForOutput(p, $"pio: done {n}", clock, TimeSpan.FromSeconds(120), seen);
            return (end - start).TotalMilliseconds * 1e6;
        }
        finally { Host.Kill(p); }
    }
    return (Run(PioExits * 2) - Run(PioExits)) / PioExits;
}
string loopExe = Path.Combine(work, "pio_loop");
var cc = Process.Start(gcc!, ["-O2", "-o", loopExe, Path.Combine(AppContext.BaseDirectory, "Native", "pio_loop.c")])!;
cc.WaitForExit();
if (cc.ExitCode != 0) { Console.Error.WriteLine("kvmps bench: gcc failed to build the bare KVM_RUN loop"); return 2; }
double LoopSample()
{
    var p = Process.Start(new ProcessStartInfo(loopExe, PioExits.ToString()) { RedirectStandardOutput = true })!;
    string line = p.StandardOutput.ReadToEnd();
    p.WaitForExit();
    var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
    return double.Parse(parts[Array.IndexOf(parts, "ns_per_exit") + 1], CultureInfo.InvariantCulture);
}
if (figures.Contains("4"))
{
Console.Error.WriteLine("figure 4: PIO exit round-trip");
var f4k = Stats.Of(Repeat(runs, PioSample));
var f4c = Stats.Of(Repeat(runs, LoopSample));
results.Add(new("4", "PIO exit round-trip (guest `out` → userspace → guest)", "µs", Scale(f4k, 1e-3), "bare C KVM_RUN loop", Scale(f4c, 1e-3), "≤ 1.1 × the C loop"));

}

// 5. virtio-blk: the same guest driver (guest `blk bench N`: N sequential 4 KiB reads) on both VMMs; one boot per
//    VMM and format, then each sample is one command typed on the console. VMM CPU is the CPU of the process's
//    threads other than the vCPUs (which run guest code on both): the device emulation's cost per request.
const int BlkRequests = 2000;
string rawImage = Path.Combine(work, "disk.raw"), qcowImage = Path.Combine(work, "disk.qcow2");
using (var f = File.Create(rawImage))
{
    var chunk = new byte[1 << 20];
    new Random(5).NextBytes(chunk);
    for (int i = 0; i < 64; i++) f.Write(chunk);
}
string? qemuImg = Host.Which("qemu-img");
if (qemuImg is not null) Process.Start(qemuImg, ["convert", "-f", "raw", "-O", "qcow2", rawImage, qcowImage])!.WaitForExit();

(List<double> CpuUs, List<double> Kiops) BlockSamples(bool kvmps, string image, string format)
{
    var clock = Stopwatch.StartNew();
    var p = kvmps
        ? Host.Start(vmm, Kvmps(1, 256, "", "--device", $"block,path={image},format={format}"))
        : Host.Start(qemu!, Qemu("pc", 1, 256, "", "-drive", $"file={image},if=none,id=d0,format={format}", "-device", "virtio-blk-pci,drive=d0,disable-legacy=on"));
    var cpu = new List<double>(); var kiops = new List<double>();
    try
    {
        var seen = new StringBuilder();
        Host.WaitForOutput(p, "ready", clock, TimeSpan.FromSeconds(120), seen);
        for (int i = 0; i <= runs; i++)
        {
            double cpuBefore = Host.CpuMs(p.Id, excludeVcpus: true);
            var start = clock.Elapsed;
            p.StandardInput.Write($"blk bench {BlkRequests}\r");
            p.StandardInput.Flush();
            string marker = $"blk: bench {BlkRequests}";
            while (CountOf(seen.ToString(), marker) < i + 1) Host.WaitForOutput(p, marker, clock, TimeSpan.FromSeconds(120), seen);
            var elapsed = clock.Elapsed - start;
            double cpuAfter = Host.CpuMs(p.Id, excludeVcpus: true);
            if (i == 0) continue; // warm-up
            cpu.Add((cpuAfter - cpuBefore) * 1000 / BlkRequests);
            kiops.Add(BlkRequests / elapsed.TotalSeconds / 1000);
        }
        return (cpu, kiops);
    }
    finally { Host.Kill(p); }
}
static int CountOf(string text, string marker)
{
    int n = 0;
    for (int at = text.IndexOf(marker, StringComparison.Ordinal); at >= 0; at = text.IndexOf(marker, at + 1, StringComparison.Ordinal)) n++;
    return n;
}
if (figures.Contains("5"))
{
Console.Error.WriteLine("figure 5: virtio-blk");
foreach (var (format, image) in new[] { ("raw", rawImage), ("qcow2", qcowImage) })
{
    if (!File.Exists(image)) { results.Add(new($"5 {format}", $"virtio-blk {format}", "", null, "QEMU virtio-blk", null, "", "not measured: qemu-img is missing to make the qcow2 image")); continue; }
    var (kCpu, kIops) = BlockSamples(true, image, format);
    var (qCpu, qIops) = BlockSamples(false, image, format);
    results.Add(new($"5 {format}", $"virtio-blk {format}: VMM CPU per 4 KiB read (non-vCPU threads)", "µs", Stats.Of(kCpu), "QEMU virtio-blk-pci", Stats.Of(qCpu), "VMM CPU per request ≤ QEMU"));
    results.Add(new($"5 {format}", $"virtio-blk {format}: 4 KiB reads per second (guest driver emulated)", "k/s", Stats.Of(kIops), "QEMU virtio-blk-pci", Stats.Of(qIops), "higher is better"));
}

}

// 6. Creation rate: 20 VMs started in parallel, to first console byte each.
double RateSample(bool kvmps)
{
    var clock = Stopwatch.StartNew();
    var procs = Enumerable.Range(0, 20).Select(_ => kvmps ? Host.Start(vmm, Kvmps(1, 128, "kvmps.run=exit 0")) : Host.Start(qemu!, Qemu("microvm", 1, 128, "kvmps.run=exit 0"))).ToList();
    try
    {
        Parallel.ForEach(procs, p => p.StandardOutput.BaseStream.ReadByte());
        return 20 / clock.Elapsed.TotalSeconds;
    }
    finally { foreach (var p in procs) Host.Kill(p); }
}
if (figures.Contains("6"))
{
Console.Error.WriteLine("figure 6: creation rate");
var f6k = Stats.Of(Repeat(runs, () => RateSample(true)));
var f6q = Stats.Of(Repeat(runs, () => RateSample(false)));
results.Add(new("6", "Creation rate: 20 VMs in parallel to first console byte", "VMs/s", f6k, "QEMU -M microvm", f6q, "higher is better"));

}

// 7. A real Linux to its test agent, same kernel, initramfs and command line on both VMMs.
if (figures.Contains("7")) results.AddRange(LinuxBoot.Measure(vmm, qemu!, runs));

// 8. Snapshots: create, restore to running, RSS after restore, against QEMU's migration to a file.
if (figures.Any(f => f.StartsWith('8'))) results.AddRange(Snapshots.Measure(vmm, qemu!, guest, work, runs, figures));

// 9. vCPU hot-add and removal on a running VM (no peer).
if (figures.Any(f => f.StartsWith('9'))) results.AddRange(Hotplug.Measure(vmm, work, runs));

// 10. Live migration against QEMU's, TCP loopback and across two network namespaces.
if (figures.Any(f => f.StartsWith("10", StringComparison.Ordinal))) results.AddRange(LiveMigration.Measure(vmm, qemu!, guest, runs, figures));

// 11. VMM CPU while a VNC viewer watches an idle and a changing screen, against QEMU's VNC.
if (figures.Any(f => f.StartsWith("11", StringComparison.Ordinal))) results.AddRange(VncWatch.Measure(vmm, qemu!, guest, work, runs, figures));

string table = Report.Table(results);
Console.WriteLine(table);
string benchmarksMd = Path.Combine(Host.RepoRoot, "docs", "benchmarks.md");
if (partial)
{
    Report.UpdateRows(benchmarksMd, results);
    Console.Error.WriteLine("kvmps bench: a partial run (--figures): updated only its rows in docs/benchmarks.md");
}
else
{
    Report.WriteMarkdown(benchmarksMd, results, table, runs);
    Console.Error.WriteLine("kvmps bench: wrote docs/benchmarks.md");
}
try { Directory.Delete(work, true); } catch { }
return 0;

static Stats Scale(Stats s, double k) => new(s.Min * k, s.Median * k, s.Max * k, s.Runs);
