using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.RegularExpressions;
using KvmPS.Engine.Tests.Devices;
using KvmPS.Engine.Tests.Support;
using Xunit.Abstractions;

namespace KvmPS.Engine.Tests.RealLinux;

[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class RealLinuxCollection { public const string Name = "real-linux"; }

/// <summary>
/// A real Linux (the test kernel of tools/linux-guest) on kvmps-vmm, with its own drivers for our tables and devices.
/// Each boot costs about a minute on the nested test host, so one boot runs many checks.
/// Run alone: <c>dotnet test tests/KvmPS.Engine.Tests -c Release --no-build --filter Category=RealLinux</c>
/// (docs/testing.md).
/// </summary>
[Trait("Category", "RealLinux")]
[Collection(RealLinuxCollection.Name)]
public class RealLinuxTests(ITestOutputHelper log)
{
    private static readonly TimeSpan ExitTimeout = TimeSpan.FromSeconds(90);

    /// <summary>
    /// Two vCPUs with a raw and a qcow2 virtio-blk disk, virtio-rng and virtio-balloon: Linux binds its drivers, the
    /// kernel log is clean, blocks written by Linux are on the host, the balloon gives memory back, and the ACPI power
    /// button (the control socket's graceful stop) shuts Linux down.
    /// </summary>
    [Fact]
    public void TwoVcpusWithDevices()
    {
        using var dir = new TempDir();
        string raw = dir.File("raw.img"), qcow2 = dir.File("q.qcow2");
        byte[] rawInitial = RandomNumberGenerator.GetBytes(1 << 20);
        File.WriteAllBytes(raw, rawInitial);
        Exec("qemu-img", "create", "-q", "-f", "qcow2", qcow2, "1M");

        using var guest = Boot(dir, 2, "256M",
            "--device", $"block,path={raw},serial=rawdisk", "--device", $"block,path={qcow2},serial=qdisk",
            "--device", "rng", "--device", "balloon,stats_interval_s=1",
            "--device", $"vsock,guest_cid=3,uds_path={dir.File("v.sock")}");

        var cpus = LinuxGuest.Fields(guest.Run("cpus"), "cpus");
        Assert.Equal("0-1", cpus["online"]);
        Assert.Equal("2", cpus["count"]);
        // Checked last, so that one bad line does not hide what the devices do.
        var kernelLog = KernelLog(guest);

        // Every virtio device is a virtio-pci function bound to its Linux driver, with MSI-X vectors.
        var pci = guest.Run("pci");
        log.WriteLine(string.Join('\n', pci));
        var virtioFunctions = pci.Where(l => l.Contains("vendor=0x1af4")).ToList();
        Assert.Equal(5, virtioFunctions.Count);
        Assert.All(virtioFunctions, l => Assert.Contains("driver=virtio-pci", l));
        Assert.All(virtioFunctions, l => Assert.DoesNotMatch(" msi=0 ", l));
        var virtio = guest.Run("virtio");
        log.WriteLine(string.Join('\n', virtio));
        Assert.Equal(2, virtio.Count(l => l.Contains("device=0x0002") && l.EndsWith("driver=virtio_blk")));
        Assert.Single(virtio, l => l.Contains("device=0x0004") && l.EndsWith("driver=virtio_rng"));
        Assert.Single(virtio, l => l.Contains("device=0x0005") && l.EndsWith("driver=virtio_balloon"));
        Assert.Single(virtio, l => l.Contains("device=0x0013") && l.EndsWith("driver=vmw_vsock_virtio_transport"));

        // virtio-blk: Linux reads what the host wrote, and what Linux writes is in the image.
        var blocks = guest.Run("blocks");
        string rawDev = DeviceWithSerial(blocks, "rawdisk"), qDev = DeviceWithSerial(blocks, "qdisk");
        Assert.Equal(Sha(rawInitial), Sum(guest.Run($"blk sum {rawDev}")));
        string rawWritten = Sum(guest.Run($"blk fill {rawDev} 256"));
        Assert.NotEqual(Sha(rawInitial), rawWritten);
        Assert.Equal(rawWritten, Sha(File.ReadAllBytes(raw)));
        Assert.Equal(Sha(new byte[1 << 20]), Sum(guest.Run($"blk sum {qDev}")));
        string qWritten = Sum(guest.Run($"blk fill {qDev} 512"));

        // virtio-rng through /dev/hwrng.
        var rng = LinuxGuest.Fields(guest.Run("rng 32"), "rng");
        Assert.Equal("virtio_rng.0", rng["current"]);
        Assert.Matches("^[0-9a-f]{64}$", rng["hex"]);
        Assert.NotEqual(new string('0', 64), rng["hex"]);

        CheckVsock(guest, dir.File("v.sock"));
        CheckAgentOverVsock(guest, dir.File("v.sock"), cpus, virtio, qDev, qWritten);
        CheckCpuOfflineOnline(guest);
        CheckBalloon(guest);

        // The ACPI power button: a graceful stop presses it, acpid powers Linux off.
        var sw = Stopwatch.StartNew();
        using (var control = new ControlClient(guest.ControlSocket))
        {
            var stop = control.Ok("stop", "\"graceful\": true, \"timeout_ms\": 60000");
            Assert.True(stop.GetProperty("power_button").GetBoolean(), stop.ToString());
            Assert.False(stop.GetProperty("forced").GetBoolean(), $"Linux did not power off on the power button: {stop}\n{guest.Diagnostics()}");
        }
        Assert.Equal(0, guest.WaitForExit(ExitTimeout));
        Assert.Contains("@agent 0 event power-button", guest.Serial);
        log.WriteLine($"power button to power-off: {sw.Elapsed.TotalSeconds:F1} s");

        // The qcow2 image Linux wrote is consistent and holds the data.
        Exec("qemu-img", "check", "-q", qcow2);
        string flat = dir.File("q.raw");
        Exec("qemu-img", "convert", "-O", "raw", qcow2, flat);
        Assert.Equal(qWritten, Sha(File.ReadAllBytes(flat)));

        AssertClean(kernelLog);
    }

    /// <summary>
    /// The agent over vsock (port 1024, one agent per connection) gives the answers the serial console's agent gave:
    /// the same CPUs, the same virtio devices bound to the same drivers, the same checksum of the disk Linux wrote.
    /// </summary>
    private void CheckAgentOverVsock(LinuxGuest guest, string udsPath, Dictionary<string, string> serialCpus,
        IReadOnlyList<string> serialVirtio, string qDev, string qWritten)
    {
        var sw = Stopwatch.StartNew();
        using var agent = guest.ConnectVsockAgent(udsPath);
        log.WriteLine($"vsock agent ready after {sw.Elapsed.TotalSeconds:F1} s");
        Assert.Equal(serialCpus, LinuxGuest.Fields(agent.Run("cpus"), "cpus"));
        Assert.Equal(serialVirtio, agent.Run("virtio"));
        Assert.Equal(qWritten, Sum(agent.Run($"blk sum {qDev}")));
        Assert.Equal(new[] { "echo over vsock" }, agent.Run("echo over vsock"));
        // An unknown command is refused over vsock as on the console.
        Assert.Single(agent.Run("no-such-command", expectRc: 2), l => l.StartsWith("error unknown command"));
        // A second connection gets an agent of its own while the first stays open.
        using (var second = guest.ConnectVsockAgent(udsPath))
            Assert.Equal(serialCpus["online"], LinuxGuest.Fields(second.Run("cpus"), "cpus")["online"]);
        Assert.Equal(new[] { "echo still here" }, agent.Run("echo still here"));
    }

    /// <summary>
    /// <c>cpu offline|online N</c>, the agent command that onlines a hot-added CPU: with CONFIG_HOTPLUG_CPU, cpu1 of
    /// two goes offline and comes back (the INIT/SIPI path a hot-added CPU takes), and Linux counts it again.
    /// </summary>
    private void CheckCpuOfflineOnline(LinuxGuest guest)
    {
        var sw = Stopwatch.StartNew();
        var off = LinuxGuest.Fields(guest.Run("cpu offline 1"), "cpu");
        Assert.Equal("0", off["online"]);
        Assert.Equal("0", off["cpus_online"]);
        Assert.Equal("0", LinuxGuest.Fields(guest.Run("cpus"), "cpus")["online"]);
        var on = LinuxGuest.Fields(guest.Run("cpu online 1"), "cpu");
        Assert.Equal("1", on["online"]);
        Assert.Equal("0-1", on["cpus_online"]);
        Assert.Equal("0-1", LinuxGuest.Fields(guest.Run("cpus"), "cpus")["online"]);
        // cpu0 has no online control in this kernel (no BOOTPARAM_HOTPLUG_CPU0): refused, and said so.
        Assert.Single(guest.Run("cpu offline 0", expectRc: 2), l => l.StartsWith("error cpu0 has no online control"));
        log.WriteLine($"cpu1 offline and online again: {sw.Elapsed.TotalSeconds:F1} s");
    }

    /// <summary>
    /// One vCPU on the single-CPU tables (no --max-vcpus): Linux's log is clean and it sees the memory it was given.
    /// virtio-net on a tap in a namespace the test makes: Linux's driver brings eth0 up and pings the host side. Then
    /// the snapshot check of issue 11 on the same boot (RealLinuxSnapshot.cs): Linux snapshotted while its agent runs
    /// a disk and network workload, the VMM killed, the VM restored in a new process.
    /// </summary>
    [NetNsFact]
    public void NetworkPingsAndAWorkloadSurvivesSnapshotKillAndRestore()
    {
        using var ns = new NetNs();
        ns.Ip("tuntap", "add", "kvl0", "mode", "tap");
        ns.Ip("addr", "add", "10.98.0.1/24", "dev", "kvl0");
        ns.Ip("link", "set", "kvl0", "up");
        using var dir = new TempDir();
        string qcow2 = dir.File("w.qcow2"), vsock = dir.File("v.sock");
        Exec("qemu-img", "create", "-q", "-f", "qcow2", qcow2, "1M");
        using var guest = BootIn(ns.Name, dir, 1, "256M", "--device", "net,tap=kvl0,mac=52:54:00:00:98:02",
            "--device", $"block,path={qcow2},serial=wdisk", "--device", $"vsock,guest_cid=3,uds_path={vsock}");
        var cpus = LinuxGuest.Fields(guest.Run("cpus"), "cpus");
        Assert.Equal("0", cpus["online"]);
        Assert.Equal("0", cpus["possible"]);
        Assert.Equal("1", cpus["count"]);
        AssertCleanKernelLog(guest);
        Assert.InRange(MemTotalKiB(guest), 200 * 1024, 256 * 1024);
        var virtio = guest.Run("virtio");
        Assert.Single(virtio, l => l.Contains("device=0x0001") && l.EndsWith("driver=virtio_net"));
        Assert.Contains(guest.Run("ifaces"), l => l.StartsWith("iface eth0 mac=52:54:00:00:98:02 "));
        var ping = guest.Run("net eth0 10.98.0.2 10.98.0.1", TimeSpan.FromMinutes(2));
        log.WriteLine(string.Join('\n', ping));
        Assert.Contains(ping, l => l.Contains("1 packets received"));
        using (var control = new ControlClient(guest.ControlSocket))
        {
            var stats = control.Ok("net.stats");
            log.WriteLine($"net.stats: {stats}");
        }

        string disk = DeviceWithSerial(guest.Run("blocks"), "wdisk");
        new RealLinuxSnapshot(log, ns.Name, dir, qcow2, vsock).Run(guest, disk, peer: "10.98.0.1");
    }

    /// <summary>
    /// The same kernel and initramfs under QEMU with KVM, for the boot-time comparison the other tests report (the
    /// figure is printed, not asserted); QEMU must reach the agent and power off through it.
    /// </summary>
    [Fact]
    public void QemuBootsTheSameGuestForComparison()
    {
        var psi = new ProcessStartInfo("qemu-system-x86_64")
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true,
        };
        // -arch-capabilities: QEMU's "host" model writes MSR 0x10a, which the nested test host's KVM refuses.
        foreach (var a in new[] { "-accel", "kvm", "-cpu", "host,-arch-capabilities", "-smp", "2", "-m", "256M", "-nodefaults", "-no-reboot",
                     "-display", "none", "-serial", "stdio", "-kernel", LinuxGuestImages.Kernel, "-initrd", LinuxGuestImages.Initramfs,
                     "-append", LinuxGuest.Cmdline })
            psi.ArgumentList.Add(a);
        var output = new StringBuilder();
        var sw = Stopwatch.StartNew();
        using var qemu = Process.Start(psi)!;
        qemu.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.Append(e.Data).Append('\n'); };
        qemu.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.Append(e.Data).Append('\n'); };
        qemu.BeginOutputReadLine();
        qemu.BeginErrorReadLine();
        string Out() { lock (output) return output.ToString(); }
        try
        {
            var deadline = DateTime.UtcNow + LinuxGuest.BootTimeout;
            while (!Out().Contains("@agent 0 ready") && !qemu.HasExited && DateTime.UtcNow < deadline) Thread.Sleep(100);
            Assert.True(Out().Contains("@agent 0 ready"), $"QEMU did not reach the agent:\n{LinuxGuest.Tail(Out(), 60)}");
            log.WriteLine($"QEMU boot to the agent with 2 vCPUs: {sw.Elapsed.TotalSeconds:F1} s " +
                          $"({Regex.Match(Out(), @"@agent 0 ready uptime=[0-9.]+").Value})");
            qemu.StandardInput.Write("1 poweroff\n");
            qemu.StandardInput.Flush();
            Assert.True(qemu.WaitForExit(ExitTimeout), $"QEMU did not power off:\n{LinuxGuest.Tail(Out(), 30)}");
            Assert.Equal(0, qemu.ExitCode);
        }
        finally
        {
            if (!qemu.HasExited) { try { qemu.Kill(true); qemu.WaitForExit(5000); } catch (InvalidOperationException) { } }
        }
    }

    private LinuxGuest Boot(TempDir dir, int vcpus, string memory, params string[] devices) => BootIn(null, dir, vcpus, memory, devices);

    private LinuxGuest BootIn(string? netns, TempDir dir, int vcpus, string memory, params string[] devices)
    {
        var guest = new LinuxGuest(dir, vcpus, memory, netns, devices);
        log.WriteLine($"boot to the agent with {vcpus} vCPU(s): {guest.BootTime.TotalSeconds:F1} s " +
                      $"(guest uptime {guest.GuestUptimeAtReady:F1} s)");
        return guest;
    }

    /// <summary>
    /// The kernel log must not show what Linux says about broken firmware tables or a timer it had to work around.
    /// </summary>
    private static void AssertCleanKernelLog(LinuxGuest guest) => AssertClean(KernelLog(guest));

    /// <summary>
    /// The kernel log's lines that may report a problem: the agent's <c>klog</c> pre-filters them (broadly: errors,
    /// failures, firmware bugs, warnings) because the emulated console is too slow for the whole log.
    /// </summary>
    internal static List<string> KernelLog(LinuxGuest guest, TimeSpan? timeout = null)
    {
        var reply = guest.Run("klog", timeout ?? TimeSpan.FromMinutes(3));
        int total = int.Parse(LinuxGuest.Fields(reply, "klog")["lines"]);
        Assert.True(total > 50, $"the kernel log has only {total} lines");
        return reply.Where(l => l.StartsWith("log ")).Select(l => l[4..]).ToList();
    }

    /// <summary>
    /// Lines the same kernel prints under QEMU on the nested test host too: its emulated CPL0 is too slow for the PIT
    /// calibration loops (the quick one, "Fast TSC calibration failed", reads the PIT's MSB within a tight TSC window,
    /// then the slow one) and the delay-loop estimate. The PM-timer reference fails for the same reason: Linux discards
    /// a reading when the TSC samples around it are 0x20000 cycles or more apart (<c>TSC_DEFAULT_THRESHOLD</c> in
    /// Linux 6.1's arch/x86/kernel/tsc.c, 5 tries), and the three port reads of <c>acpi_pm_read_verified</c>, each a
    /// nested exit to the VMM between emulated CPL0 instructions, take longer than that here (about 50 µs).
    /// Not about our tables or devices.
    /// </summary>
    private static readonly Regex HostSpeedArtifact =
        new(@"tsc: Fast TSC calibration failed$|tsc: Unable to calibrate against PIT$|tsc: HPET/PMTIMER calibration failed$|calibrate_delay_direct\(\) failed to get a good estimate");

    internal static void AssertClean(List<string> kernelLog)
    {
        var bad = new Regex(@"MP-BIOS bug|Firmware Bug|FW_BUG|ACPI BIOS Error|ACPI Error|" +
                            @"(timer|8254|PIT|IO-APIC|APIC|tsc|clocksource).*(failed|Unable|not connected)|" +
                            @"(failed|Unable).*(timer|8254|PIT|calibrate)", RegexOptions.IgnoreCase);
        var hits = kernelLog.Where(l => bad.IsMatch(l) && !HostSpeedArtifact.IsMatch(l)).ToList();
        Assert.True(hits.Count == 0, $"the kernel log reports problems:\n{string.Join('\n', hits)}\n--- all suspicious lines ---\n{string.Join('\n', kernelLog)}");
    }

    /// <summary>vsock both ways with Linux's virtio transport: host → guest through CONNECT, guest → host to uds_path_PORT.</summary>
    private void CheckVsock(LinuxGuest guest, string udsPath)
    {
        guest.Run("vsock listen 5000");
        string reply = "";
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (DateTime.UtcNow < deadline)
        {
            // The echo server starts in the background (a fork+exec): retry until it listens.
            using var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            s.Connect(new UnixDomainSocketEndPoint(udsPath));
            s.ReceiveTimeout = 20_000;
            using var stream = new NetworkStream(s);
            using var reader = new StreamReader(stream);
            stream.Write(Encoding.ASCII.GetBytes("CONNECT 5000\n"));
            string? ok;
            try { ok = reader.ReadLine(); } catch (IOException) { ok = null; }
            if (ok is null) { Thread.Sleep(1000); continue; }
            Assert.StartsWith("OK ", ok);
            stream.Write(Encoding.ASCII.GetBytes("hello over vsock\n"));
            reply = reader.ReadLine() ?? "";
            break;
        }
        Assert.True(reply == "hello over vsock", $"host → guest vsock echo: '{reply}'\n{guest.Diagnostics()}");

        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(udsPath + "_6000"));
        listener.Listen(1);
        var served = Task.Run(() =>
        {
            using var c = listener.Accept();
            using var stream = new NetworkStream(c);
            using var reader = new StreamReader(stream);
            string line = reader.ReadLine() ?? "";
            stream.Write(Encoding.ASCII.GetBytes($"host got {line}\n"));
            return line;
        });
        var sent = guest.Run("vsock send 6000 ping-from-linux");
        Assert.Equal("ping-from-linux", served.Wait(TimeSpan.FromSeconds(30)) ? served.Result : "(nothing)");
        Assert.Contains("vsock reply=host got ping-from-linux", sent);
    }

    private void CheckBalloon(LinuxGuest guest)
    {
        using var control = new ControlClient(guest.ControlSocket);
        long before = MemTotalKiB(guest);
        // Touching memory is slow at emulated CPL0 (a page fault each): 24 MiB take minutes on a shared host.
        guest.Run("touchmem 24", TimeSpan.FromMinutes(6));
        long rssBefore = control.Ok("metrics").GetProperty("guest_rss_bytes").GetInt64();
        const long target = 48L << 20;
        control.Ok("balloon.set", $"\"target_bytes\": {target}");
        JsonElement state = default;
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(5);
        while (DateTime.UtcNow < deadline)
        {
            state = control.Ok("balloon.get");
            if (state.GetProperty("actual_bytes").GetInt64() == target) break;
            Thread.Sleep(500);
        }
        Assert.True(state.GetProperty("actual_bytes").GetInt64() == target, $"the balloon did not reach {target}: {state}\n{guest.Diagnostics()}");
        long rssAfter = control.Ok("metrics").GetProperty("guest_rss_bytes").GetInt64();
        long after = MemTotalKiB(guest);
        log.WriteLine($"balloon {target >> 20} MiB: guest MemTotal {before} -> {after} KiB, host guest RSS {rssBefore >> 20} -> {rssAfter >> 20} MiB");
        Assert.InRange(before - after, (target >> 10) - 1024, (target >> 10) + 1024);
        Assert.True(rssBefore - rssAfter >= 12L << 20, $"guest RSS fell only from {rssBefore} to {rssAfter}: {state}");
        // Linux's driver sends its statistics (stats_interval_s=1).
        deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (state.GetProperty("stats").EnumerateObject().All(_ => false) && DateTime.UtcNow < deadline)
        {
            Thread.Sleep(500);
            state = control.Ok("balloon.get");
        }
        Assert.True(state.GetProperty("stats").EnumerateObject().Any(), $"no balloon statistics reached the host: {state}");
        control.Ok("balloon.set", "\"target_bytes\": 0");
        deadline = DateTime.UtcNow + TimeSpan.FromMinutes(5);
        while (control.Ok("balloon.get").GetProperty("actual_bytes").GetInt64() != 0 && DateTime.UtcNow < deadline) Thread.Sleep(500);
        Assert.Equal(before, MemTotalKiB(guest));
    }

    /// <summary>MemTotal in KiB (mem answers MemTotal, MemFree and MemAvailable as separate lines).</summary>
    internal static long MemTotalKiB(LinuxGuest guest) =>
        long.Parse(guest.Run("mem").First(l => l.StartsWith("mem MemTotal=")).Split('=')[1]);

    internal static string DeviceWithSerial(IEnumerable<string> blocks, string serial) =>
        blocks.Single(l => l.EndsWith($" serial={serial}")).Split(' ')[1];

    private static string Sum(IReadOnlyList<string> reply) => LinuxGuest.Fields(reply, "blk")["sha256"];

    internal static string Sha(byte[] data) => Convert.ToHexString(SHA256.HashData(data)).ToLowerInvariant();

    internal static void Exec(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        string output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, $"{file} {string.Join(' ', args)} failed ({p.ExitCode}): {output}");
    }
}
