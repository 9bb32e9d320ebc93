using System.Diagnostics;
using System.Text;
using KvmPS.Engine.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace KvmPS.Engine.Tests.Devices;

/// <summary>
/// A fact that needs root, iproute2's <c>ip</c>, /dev/net/tun, /dev/kvm and the published kvmps-vmm
/// (<c>$KVMPS_VMM</c> or out/bin); skipped with the reason otherwise. Everything such a test does to the network
/// happens inside a network namespace of its own.
/// </summary>
public sealed class NetNsFactAttribute : FactAttribute
{
    public NetNsFactAttribute(bool needsPing = false)
    {
        string? why = null;
        if (KvmPS.Interop.Libc.GetEuid() != 0) why = "not root (network namespaces and taps need CAP_NET_ADMIN)";
        else if (NetNs.FindTool("ip") is null) why = "no 'ip' (apt-get install -y iproute2)";
        else if (needsPing && NetNs.FindTool("ping") is null) why = "no 'ping' (apt-get install -y iputils-ping)";
        else if (!File.Exists("/dev/net/tun")) why = "no /dev/net/tun";
        else if (!File.Exists("/dev/kvm")) why = "no /dev/kvm";
        else
        {
            try { if (VmmBinary.TryFind() is null) why = "kvmps-vmm is not published (./build.sh build, or set KVMPS_VMM)"; }
            catch (FileNotFoundException e) { why = e.Message; }
        }
        if (why is not null) Skip = why;
    }
}

/// <summary>A throw-away network namespace "kvt-XXXXXXXX"; deleted (with its taps and bridges) on Dispose.</summary>
internal sealed class NetNs : IDisposable
{
    public string Name { get; } = "kvt-" + Convert.ToHexString(Guid.NewGuid().ToByteArray()[..4]).ToLowerInvariant();

    public NetNs()
    {
        Run("ip", "netns", "add", Name);
        Ip("link", "set", "lo", "up");
    }

    public static string? FindTool(string name)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Concat(["/usr/sbin", "/sbin", "/usr/bin", "/bin"]))
            if (dir.Length > 0 && File.Exists(Path.Combine(dir, name))) return Path.Combine(dir, name);
        return null;
    }

    /// <summary>
    /// Joins this namespace and <paramref name="other"/> by a veth pair with the given addresses (CIDR), both up: two
    /// "hosts" on one link. Returns the two interface names (this side, the other side).
    /// </summary>
    public (string Here, string There) JoinByVeth(NetNs other, string addressHere, string addressThere)
    {
        string here = "kvm" + Name[^6..], there = "kvm" + other.Name[^6..];
        Run("ip", "link", "add", here, "netns", Name, "type", "veth", "peer", "name", there, "netns", other.Name);
        Ip("addr", "add", addressHere, "dev", here);
        Ip("link", "set", here, "up");
        other.Ip("addr", "add", addressThere, "dev", there);
        other.Ip("link", "set", there, "up");
        return (here, there);
    }

    /// <summary>`ip -n NS ARGS`; throws with the output when it fails.</summary>
    public string Ip(params string[] args) => Run("ip", ["-n", Name, .. args]);

    /// <summary>`ip netns exec NS ARGS`: (exit code, stdout + stderr).</summary>
    // A kvmps-vmm run here is jailed as <see cref="VmmProcess"/> jails it (TestJail.Options).
    public (int Code, string Output) Exec(TimeSpan timeout, params string[] args) => RunRaw("ip", ["netns", "exec", Name, .. args, .. VmmJailOptions(args)], timeout);

    public Process Start(params string[] args) => Start(args, unjailed: false);

    /// <param name="unjailed">the VMM runs unjailed whatever the harness says (a test asserting unjailed behaviour)</param>
    public Process Start(string[] args, bool unjailed)
    {
        var psi = new ProcessStartInfo(FindTool("ip")!) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in (string[])["netns", "exec", Name, .. args, .. unjailed ? [] : VmmJailOptions(args)]) psi.ArgumentList.Add(a);
        return Process.Start(psi)!;
    }

    private static string[] VmmJailOptions(string[] args) => args is [var program, ..] && program == VmmBinary.Executable ? TestJail.Options(args) : [];

    public static string Run(string tool, params string[] args)
    {
        var (code, output) = RunRaw(tool, args, TimeSpan.FromSeconds(30));
        if (code != 0) throw new InvalidOperationException($"{tool} {string.Join(' ', args)} exited {code}: {output}");
        return output;
    }

    private static (int, string) RunRaw(string tool, string[] args, TimeSpan timeout)
    {
        var psi = new ProcessStartInfo(FindTool(tool) ?? tool) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeout)) { try { p.Kill(true); } catch { } throw new TimeoutException($"{tool} {string.Join(' ', args)} timed out"); }
        p.WaitForExit();
        return (p.ExitCode, stdout.Result + stderr.Result);
    }

    public void Dispose()
    {
        try { RunRaw("ip", ["netns", "delete", Name], TimeSpan.FromSeconds(30)); } catch { }
    }
}

/// <summary>kvmps-vmm with virtio-net on a tap, inside a private network namespace: the host pings the built-in guest.</summary>
public sealed class VirtioNetTapTests(ITestOutputHelper log)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(120);

    /// <summary>Boots the guest answering pings at 10.99.0.2; <paramref name="hostSide"/> configures the namespace once the tap exists.</summary>
    private void PingGuest(NetNs ns, string device, Action hostSide)
    {
        using var vmm = ns.Start(VmmBinary.Executable, "--device", device, "--cmdline", "kvmps.run=net info,net ip 10.99.0.2,net send,net serve 3 60,exit 0");
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        vmm.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (stdout) stdout.AppendLine(e.Data); };
        vmm.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (stderr) stderr.AppendLine(e.Data); };
        vmm.BeginOutputReadLine();
        vmm.BeginErrorReadLine();
        string Out() { lock (stdout) return stdout.ToString(); }
        string Err() { lock (stderr) return stderr.ToString(); }
        try
        {
            var deadline = DateTime.UtcNow + Timeout;
            while (!Out().Contains("net: serving") && !vmm.HasExited && DateTime.UtcNow < deadline) Thread.Sleep(20);
            Assert.True(Out().Contains("net: serving"), $"the guest did not start serving.\nstdout:\n{Out()}\nstderr:\n{Err()}");
            Assert.Matches(@"net: mac 52:54:00:[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2} link up", Out());
            hostSide();
            var (code, ping) = ns.Exec(Timeout, "ping", "-c", "3", "-W", "5", "10.99.0.2");
            log.WriteLine(ping);
            Assert.True(code == 0, $"ping failed ({code}):\n{ping}\nguest:\n{Out()}\nstderr:\n{Err()}");
            Assert.Contains("3 received", ping);
            Assert.True(vmm.WaitForExit((int)Timeout.TotalMilliseconds), "the VMM did not exit");
            vmm.WaitForExit();
            log.WriteLine(Out());
            log.WriteLine(Err());
            Assert.Contains("net: sent", Out());
            Assert.Contains("net: replied 3", Out());
            Assert.Equal(0 << 1 | 1, vmm.ExitCode); // isa-debug-exit: exit 0 → status 1
        }
        finally
        {
            if (!vmm.HasExited) { try { vmm.Kill(true); vmm.WaitForExit(5000); } catch { } }
        }
    }

    [NetNsFact(needsPing: true)]
    public void HostPingsTheGuestThroughATapTheVmmCreates()
    {
        using var ns = new NetNs();
        PingGuest(ns, "net,tap=kvt0", () =>
        {
            Assert.Contains("UP", ns.Ip("link", "show", "kvt0")); // the VMM created it and brought it up
            ns.Ip("addr", "add", "10.99.0.1/24", "dev", "kvt0");
        });
        // The tap was the VMM's: it is gone with the VMM.
        Assert.DoesNotContain("kvt0", ns.Ip("link", "show"));
    }

    [NetNsFact(needsPing: true)]
    public void HostPingsTheGuestThroughABridge()
    {
        using var ns = new NetNs();
        ns.Ip("link", "add", "kvtbr0", "type", "bridge");
        ns.Ip("link", "set", "kvtbr0", "up");
        ns.Ip("addr", "add", "10.99.0.1/24", "dev", "kvtbr0");
        PingGuest(ns, "net,tap=kvt0,bridge=kvtbr0,mac=52:54:00:aa:bb:cc", () =>
            Assert.Contains("master kvtbr0", ns.Ip("link", "show", "kvt0")));
    }

    [NetNsFact]
    public void AnExistingTapIsUsedAndAMissingBridgeIsAnError()
    {
        using var ns = new NetNs();
        ns.Ip("tuntap", "add", "kvtp0", "mode", "tap");
        var (code, output) = ns.Exec(Timeout, VmmBinary.Executable, "--device", "net,tap=kvtp0,bridge=kvtnobr0", "--cmdline", "kvmps.run=exit 0");
        Assert.Equal(8, code); // host resource: the bridge
        Assert.Contains("bridge 'kvtnobr0' does not exist", output);
        // A persistent tap made beforehand: the VMM attaches to it, brings it up, and leaves it in place.
        (code, output) = ns.Exec(Timeout, VmmBinary.Executable, "--device", "net,tap=kvtp0", "--cmdline", "kvmps.run=net info,exit 0");
        log.WriteLine(output);
        Assert.Equal(0 << 1 | 1, code);
        Assert.Contains("net: mac 52:54:00:", output);
        Assert.Contains("kvtp0", ns.Ip("link", "show", "kvtp0"));
    }
}
