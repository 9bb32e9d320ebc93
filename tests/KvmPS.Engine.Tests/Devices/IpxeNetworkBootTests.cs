using System.Diagnostics;
using System.Text;
using KvmPS.Engine.Tests.Support;
using Xunit;
using Xunit.Sdk;
using Xunit.Abstractions;

namespace KvmPS.Engine.Tests.Devices;

/// <summary>
/// A <see cref="NetNsFactAttribute"/> that also needs SeaBIOS, Debian's iPXE virtio-net ROM and dnsmasq. A test may
/// report itself skipped with <see cref="HostLimitationSkip"/> when it saw a known host limitation exactly.
/// </summary>
[XunitTestCaseDiscoverer("KvmPS.Engine.Tests.Support.HostLimitationDiscoverer", "KvmPS.Engine.Tests")]
public sealed class IpxeFactAttribute : FactAttribute
{
    public const string Rom = "/usr/lib/ipxe/qemu/pxe-virtio.rom";

    public IpxeFactAttribute()
    {
        string? why = new NetNsFactAttribute().Skip;
        if (why is null && !File.Exists("/usr/share/seabios/bios-256k.bin")) why = "no SeaBIOS (apt-get install -y seabios)";
        else if (why is null && !File.Exists(Rom)) why = $"no {Rom} (apt-get install -y ipxe-qemu)";
        else if (why is null && NetNs.FindTool("dnsmasq") is null) why = "no dnsmasq (apt-get install -y dnsmasq-base)";
        if (why is not null) Skip = why;
    }
}

/// <summary>
/// Network boot with a third-party DHCP client: SeaBIOS finds iPXE behind the virtio-net function's expansion ROM
/// BAR, runs it, iPXE drives our virtio-net and asks for an address, and the dnsmasq this test runs in its own
/// network namespace records a lease for the VM's MAC.
/// </summary>
[Trait("Category", "NetworkBoot")]
public sealed class IpxeNetworkBootTests(ITestOutputHelper log)
{
    // Guest CPL0 code is emulated instruction by instruction on the nested test host: SeaBIOS plus iPXE take a while.
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(110);
    private const string Mac = "52:54:00:1b:0e:51";

    /// <summary>What one run left behind: the consoles and dnsmasq's files, and when things happened (ms after the VMM started).</summary>
    private sealed record Run(string Serial, string DebugCon, string DnsmasqLog, string Leases, string VmmStderr, long IpxeStartedMs, long DoneMs, bool VmmExited);

    /// <summary>
    /// A bridge 10.98.0.1/24 in a fresh namespace with a dnsmasq of the test's own (config, lease file, log), and a
    /// SeaBIOS VM without a disk whose one virtio-net NIC on that bridge carries iPXE's ROM; runs until
    /// <paramref name="done"/> holds for the run so far, the VMM exits, or the timeout passes.
    /// </summary>
    private Run BootFromTheNetwork(Func<Run, bool> done)
    {
        using var ns = new NetNs();
        string dir = Directory.CreateTempSubdirectory("kvt-ipxe-").FullName;
        Process? dnsmasq = null, vmm = null;
        var stderr = new StringBuilder();
        try
        {
            ns.Ip("link", "add", "kvtbr0", "type", "bridge");
            ns.Ip("addr", "add", "10.98.0.1/24", "dev", "kvtbr0");
            ns.Ip("link", "set", "kvtbr0", "up");
            string leases = Path.Combine(dir, "leases"), dnsLog = Path.Combine(dir, "dnsmasq.log"), conf = Path.Combine(dir, "dnsmasq.conf");
            File.WriteAllText(conf, string.Join('\n',
                "port=0", "bind-interfaces", "interface=kvtbr0", "except-interface=lo", "dhcp-range=10.98.0.100,10.98.0.150,1h",
                "log-dhcp", $"log-facility={dnsLog}", $"dhcp-leasefile={leases}", "dhcp-authoritative", ""));
            // Its own conf file (never the host's /etc/dnsmasq.conf), in the foreground, so the test owns its lifetime.
            dnsmasq = ns.Start("dnsmasq", "--keep-in-foreground", "--conf-file=" + conf, "--pid-file=" + Path.Combine(dir, "pid"), "--user=root", "--group=root");
            Assert.True(WaitFor(() => Read(dnsLog).Contains("DHCP, sockets bound") || dnsmasq.HasExited, TimeSpan.FromSeconds(10)) && !dnsmasq.HasExited,
                $"dnsmasq did not start: {(dnsmasq.HasExited ? dnsmasq.StandardError.ReadToEnd() : "")}{Read(dnsLog)}");

            string serial = Path.Combine(dir, "serial"), debug = Path.Combine(dir, "debugcon");
            var clock = Stopwatch.StartNew();
            vmm = ns.Start(VmmBinary.Executable, "--firmware", "seabios", "--memory", "128M", "--serial", "file:" + serial, "--debugcon", "file:" + debug,
                "--device", $"net,tap=kvt0,bridge=kvtbr0,mac={Mac},rom_path={IpxeFactAttribute.Rom}");
            vmm.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (stderr) stderr.AppendLine(e.Data); };
            vmm.BeginErrorReadLine();
            vmm.BeginOutputReadLine();
            long ipxeStarted = -1;
            Run Snapshot()
            {
                string console = Read(serial);
                if (ipxeStarted < 0 && console.Contains("iPXE initialising devices...ok")) ipxeStarted = clock.ElapsedMilliseconds;
                lock (stderr) return new Run(console, Read(debug), Read(dnsLog), Read(leases), stderr.ToString(), ipxeStarted, clock.ElapsedMilliseconds, vmm.HasExited);
            }
            WaitFor(() => { var r = Snapshot(); return done(r) || r.VmmExited; }, Timeout);
            // An exited VMM's last stderr lines (its exit reason) may still be on their way to the event handler:
            // WaitForExit() without a timeout returns once the redirected streams reached their end.
            if (vmm.HasExited) vmm.WaitForExit();
            var run = Snapshot();
            log.WriteLine($"VMM start → iPXE initialised: {run.IpxeStartedMs} ms; run ended after {run.DoneMs} ms");
            log.WriteLine($"--- vmm stderr ---\n{run.VmmStderr}\n--- serial ---\n{run.Serial}\n--- debugcon (tail) ---\n{Tail(run.DebugCon)}\n--- dnsmasq ---\n{run.DnsmasqLog}\n--- leases ---\n{run.Leases}");
            return run;
        }
        finally
        {
            foreach (var p in new[] { vmm, dnsmasq })
                if (p is { HasExited: false }) { try { p.Kill(true); p.WaitForExit(5000); } catch { } }
            vmm?.Dispose();
            dnsmasq?.Dispose();
            try { Directory.Delete(dir, true); } catch { }
        }
    }

    /// <summary>SeaBIOS sizes and maps the ROM BAR, copies iPXE out and runs it; iPXE finds our virtio-net function.</summary>
    [IpxeFact]
    public void SeaBiosRunsIpxeFromTheRomBar()
    {
        var run = BootFromTheNetwork(r => r.IpxeStartedMs >= 0);
        Assert.True(run.IpxeStartedMs >= 0, "iPXE did not start (see the output above)");
        Assert.Contains("Running option rom at c", run.DebugCon);              // SeaBIOS's optionrom scan found it through 0x30
        Assert.Contains("iPXE (http://ipxe.org) 00:01.0", run.Serial);         // iPXE's init banner (its PnP init entry)
        Assert.Contains("Booting from ROM...", run.Serial);                    // no disk: SeaBIOS boots iPXE's BEV
        Assert.Contains("iPXE (PCI 00:01.0) starting execution...ok", run.Serial);
        Assert.Matches(@"expansion ROM at 0x[0-9a-f]+: 75\d\d\d bytes read in \d+ ms", run.VmmStderr); // the whole image, through the BAR
    }

    /// <summary>
    /// iPXE drives virtio-net and gets a lease from dnsmasq for the VM's MAC. Skipped (as a host limitation) only when
    /// the VM crashed with the exact KVM internal error of an unemulatable protected-mode IRET after iPXE started:
    /// KVM through PVM (the nested test host) emulates the 32-bit non-paged code of iPXE and cannot do that IRET
    /// (QEMU stops at the same instruction with the same registers); on hardware the guest runs it natively.
    /// </summary>
    [IpxeFact]
    public void IpxeGetsALeaseFromDnsmasqForTheVmsMac()
    {
        var run = BootFromTheNetwork(r => r.Leases.Contains(Mac, StringComparison.OrdinalIgnoreCase));
        if (run.VmmExited && run.IpxeStartedMs >= 0 && IretEmulationFailure.Match(run.VmmStderr) is { Success: true } crash)
            throw new HostLimitationSkip($"blocked here: KVM (PVM) cannot emulate iPXE's protected-mode IRET, so iPXE stops before DHCP ({crash.Value}); iPXE started after {run.IpxeStartedMs} ms");
        Assert.False(run.VmmExited, "the VMM exited before a lease was recorded (see the output above)");
        // dnsmasq's lease line: "<expiry> <mac> <ip> <hostname> <client-id>", the address from the range.
        string line = run.Leases.Split('\n').FirstOrDefault(l => l.Contains(Mac, StringComparison.OrdinalIgnoreCase))
            ?? throw new XunitException($"no lease for {Mac} within {Timeout.TotalSeconds} s");
        var fields = line.Split(' ');
        Assert.Equal(Mac, fields[1], ignoreCase: true);
        Assert.Matches(@"^10\.98\.0\.(1[0-4][0-9]|150)$", fields[2]);
        Assert.Contains($"DHCPDISCOVER(kvtbr0) {Mac}", run.DnsmasqLog, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("vendor class: PXEClient", run.DnsmasqLog); // the client is iPXE's PXE stack, not our guest code
        log.WriteLine($"SeaBIOS → iPXE → dnsmasq lease: {run.DoneMs} ms");
    }

    /// <summary>
    /// The VMM's report of KVM_INTERNAL_ERROR_EMULATION with the instruction bytes (flags 1, then insn_size 15 and the
    /// first byte 0xCF, IRET, in the low bytes of the second word).
    /// </summary>
    private static readonly System.Text.RegularExpressions.Regex IretEmulationFailure =
        new(@"KVM internal error on vCPU \d+: instruction emulation failed \(data 0x1 0x[0-9a-f]*cf0f [^)]*\); RIP=0x[0-9a-f]+[^\n]*");

    private static string Read(string path)
    {
        try { using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite); return new StreamReader(f).ReadToEnd(); }
        catch (FileNotFoundException) { return ""; }
    }

    private static string Tail(string text, int lines = 30) => string.Join('\n', text.Split('\n').TakeLast(lines));

    private static bool WaitFor(Func<bool> condition, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline) { if (condition()) return true; Thread.Sleep(100); }
        return condition();
    }
}
