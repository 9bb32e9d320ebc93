using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using KvmPS.Contract;
using KvmPS.Engine.Tests.Devices;
using KvmPS.Engine.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace KvmPS.Engine.Tests.Migration;

/// <summary>
/// Local live upgrade of a VM with a tap NIC and a vsock device (docs/migration.md, "Local live upgrade"): the running
/// VMM hands its open tap and its vsock listening socket to the new one over the migration socket, so the guest keeps
/// its interface (same ifindex, same bridge port: the host pings it on) and the vsock path keeps answering (same socket,
/// never bound again). A new VMM that refuses what it was handed leaves the old one running with its tap and listener.
/// </summary>
[Collection("vmm-process")]
public partial class NetVsockHandoverTests(ITestOutputHelper log)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);

    [GeneratedRegex(@"^(\d+): ")]
    private static partial Regex IfIndex();

    private static void WaitListening(VmmProcess destination)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (!destination.Stderr.Contains("waiting for a migration stream") && DateTime.UtcNow < deadline && !destination.HasExited) Thread.Sleep(10);
        Assert.Contains("waiting for a migration stream", destination.Stderr);
    }

    private static (int Code, string Output) Ping(NetNs ns) => ns.Exec(Timeout, "ping", "-c", "3", "-W", "5", "10.99.0.2");

    private static string Link(NetNs ns, string tap) => ns.Ip("-o", "link", "show", tap);

    private static void JsonStatus(ControlClient control, out string phase, out string? error)
    {
        var deadline = DateTime.UtcNow + Timeout;
        System.Text.Json.JsonElement status;
        do
        {
            status = control.Ok("migrate.status");
            phase = status.GetProperty("phase").GetString()!;
            if (phase is MigrationPhases.Failed or MigrationPhases.Completed or MigrationPhases.Cancelled) break;
            Thread.Sleep(10);
        } while (DateTime.UtcNow < deadline);
        error = status.TryGetProperty("error", out var e) ? e.GetString() : null;
    }

    /// <summary>
    /// created: the VMM made the tap (it goes with its last descriptor, so only the hand-over keeps it through the old
    /// VMM's exit). existing: a persistent tap made beforehand, which a VMM detaches from its bridge when it disposes it:
    /// the old VMM must not once it handed it over.
    /// </summary>
    [NetNsFact(needsPing: true)]
    public void TheTapIsHandedOverAndTheHostPingsTheGuestThroughTheSameInterfaceAfterTheUpgrade() => UpgradeWithTap(existing: false);

    [NetNsFact(needsPing: true)]
    public void AnExistingTapStaysInItsBridgeThroughTheUpgrade() => UpgradeWithTap(existing: true);

    private void UpgradeWithTap(bool existing)
    {
        using var ns = new NetNs();
        using var dir = new TempDir();
        ns.Ip("link", "add", "kvtbr0", "type", "bridge");
        ns.Ip("link", "set", "kvtbr0", "up");
        ns.Ip("addr", "add", "10.99.0.1/24", "dev", "kvtbr0");
        if (existing) ns.Ip("tuntap", "add", "kvt0", "mode", "tap");
        string[] args = ["--memfd", "on", "--device", "net,tap=kvt0,bridge=kvtbr0,mac=52:54:00:aa:bb:01"];
        using var source = new VmmProcess([.. args, "--control-socket", dir.File("src.sock"), "--cmdline", "kvmps.run=net ip 10.99.0.2,net serve 1000 300"], redirectStdin: false, netns: ns.Name);
        Assert.True(source.WaitForStdout("net: serving", Timeout), source.Stdout + source.Stderr);
        string before = Link(ns, "kvt0");
        Assert.Contains("master kvtbr0", before);
        var first = Ping(ns);
        Assert.True(first.Code == 0, "before the upgrade: " + first.Output + source.Stdout + source.Stderr);

        string uri = "unix:" + dir.File("up.sock");
        using var destination = new VmmProcess([.. args, "--incoming", uri, "--control-socket", dir.File("dst.sock"), "--cmdline", "kvmps.run=net info"], redirectStdin: false, netns: ns.Name);
        WaitListening(destination);
        using (var control = new ControlClient(dir.File("src.sock"))) control.Ok("migrate", $"\"uri\": \"{uri}\"");
        Assert.Equal(VmmExitCode.Migrated, source.WaitForExit(Timeout));
        log.WriteLine(source.Stderr + destination.Stderr);
        Assert.Matches(@"migrated to unix:.*memory passed as memfds \(not copied\), 1 taps handed over", source.Stderr);
        Assert.Contains("1 taps handed over", destination.Stderr);

        // The old VMM is gone and the interface is the same one (not made again: same ifindex), up, in its bridge.
        string after = Link(ns, "kvt0");
        Assert.Equal(IfIndex().Match(before).Groups[1].Value, IfIndex().Match(after).Groups[1].Value);
        Assert.Contains("master kvtbr0", after);
        Assert.Contains("UP", after);
        var second = Ping(ns);
        Assert.True(second.Code == 0, "after the upgrade: " + second.Output + destination.Stdout + destination.Stderr);
        Assert.Contains("3 received", second.Output);
        using (var control = new ControlClient(dir.File("dst.sock"), TimeSpan.FromSeconds(30)))
        {
            Assert.Equal(destination.Pid, control.Ok("describe").GetProperty("pid").GetInt32());
            Assert.NotEqual(source.Pid, destination.Pid);
            var stats = control.Ok("net.stats");
            Assert.True(stats.GetProperty("tx_packets").GetInt64() >= 3, "the new VMM sent the echo replies: " + stats);
            control.Ok("stop", "\"graceful\": false");
        }
        destination.WaitForExit(Timeout);
        // A tap made beforehand outlives both VMMs; one a VMM made goes with its last descriptor, the new VMM's.
        if (existing) Assert.Contains("kvt0", ns.Ip("link", "show"));
        else Assert.DoesNotContain("kvt0", ns.Ip("link", "show"));
    }

    [NetNsFact(needsPing: true)]
    public void ANewVmmThatRefusesTheTapLeavesTheOldOneRunningOnIt()
    {
        using var ns = new NetNs();
        using var dir = new TempDir();
        ns.Ip("link", "add", "kvtbr0", "type", "bridge");
        ns.Ip("link", "set", "kvtbr0", "up");
        ns.Ip("addr", "add", "10.99.0.1/24", "dev", "kvtbr0");
        ns.Ip("tuntap", "add", "kvt0", "mode", "tap");
        using var source = new VmmProcess(["--memfd", "on", "--device", "net,tap=kvt0,bridge=kvtbr0", "--control-socket", dir.File("src.sock"), "--cmdline", "kvmps.run=net ip 10.99.0.2,net serve 1000 300"], redirectStdin: false, netns: ns.Name);
        Assert.True(source.WaitForStdout("net: serving", Timeout), source.Stdout + source.Stderr);
        // The new VMM's configuration names another tap: the one handed over is not it.
        string uri = "unix:" + dir.File("up.sock");
        using var destination = new VmmProcess(["--memfd", "on", "--device", "net,tap=kvt9,bridge=kvtbr0", "--incoming", uri, "--control-socket", dir.File("dst.sock")], redirectStdin: false, netns: ns.Name);
        WaitListening(destination);
        using var control = new ControlClient(dir.File("src.sock"));
        control.Ok("migrate", $"\"uri\": \"{uri}\"");
        JsonStatus(control, out string phase, out string? error);
        log.WriteLine(source.Stderr + destination.Stderr);
        Assert.Equal(MigrationPhases.Failed, phase);
        Assert.Contains("'kvt0', another interface", error);
        Assert.Equal(VmmExitCode.IncomingFailed, destination.WaitForExit(Timeout));
        // The refusing VMM closed its copy and undid nothing: the tap is in its bridge and the old VMM serves the guest.
        Assert.Contains("master kvtbr0", Link(ns, "kvt0"));
        Assert.False(source.HasExited);
        Assert.Equal("Running", control.Ok("status").GetProperty("state").GetString());
        var ping = Ping(ns);
        Assert.True(ping.Code == 0, ping.Output + source.Stdout + source.Stderr);
        control.Ok("stop", "\"graceful\": false");
        source.WaitForExit(Timeout);
    }

    // ---- vsock ----

    private static string ReadLine(Socket s)
    {
        var sb = new StringBuilder();
        var b = new byte[1];
        s.ReceiveTimeout = 30000;
        while (s.Receive(b) == 1 && b[0] != '\n') sb.Append((char)b[0]);
        return sb.ToString();
    }

    /// <summary>Has the guest listen on <paramref name="port"/>, connects to it through the host path and checks its echo.</summary>
    private static void Echo(VmmProcess vmm, string uds, int port, string text)
    {
        vmm.Stdin.Write($"vsock listen {port}\n");
        vmm.Stdin.Flush();
        Assert.True(vmm.WaitForStdout($"vsock: listening on {port}", Timeout), vmm.Stdout + vmm.Stderr);
        using var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        s.Connect(new UnixDomainSocketEndPoint(uds));
        s.Send(Encoding.ASCII.GetBytes($"CONNECT {port}\n"));
        Assert.Matches(@"^OK \d+$", ReadLine(s));
        s.Send(Encoding.ASCII.GetBytes(text));
        var b = new byte[64];
        s.ReceiveTimeout = 30000;
        int n = s.Receive(b);
        Assert.Equal(text, Encoding.ASCII.GetString(b, 0, n));
        Assert.True(vmm.WaitForStdout($"vsock: echoed {text.Length}", Timeout), vmm.Stdout);
    }

    [Fact]
    public void TheVsockListenerIsHandedOverAndTheHostPathKeepsAnswering()
    {
        using var dir = new TempDir();
        string uds = dir.File("v.sock");
        string[] args = ["--memfd", "on", "--device", $"vsock,guest_cid=3,uds_path={uds}"];
        using var source = new VmmProcess([.. args, "--control-socket", dir.File("src.sock"), "--cmdline", "kvmps.run=vsock cid"], redirectStdin: true);
        Assert.True(source.WaitForStdout("vsock: cid 3", Timeout), source.Stdout + source.Stderr);
        Echo(source, uds, 5000, "before");
        long inode = StatInode(uds);
        // A host client half way through its CONNECT line when the old VMM goes: its connection is reset (EOF).
        using var pending = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        pending.Connect(new UnixDomainSocketEndPoint(uds));
        pending.Send("CONN"u8);

        string uri = "unix:" + dir.File("up.sock");
        using var destination = new VmmProcess([.. args, "--incoming", uri, "--control-socket", dir.File("dst.sock"), "--cmdline", "kvmps.run=vsock cid"], redirectStdin: true);
        WaitListening(destination);
        using (var control = new ControlClient(dir.File("src.sock"))) control.Ok("migrate", $"\"uri\": \"{uri}\"");
        Assert.Equal(VmmExitCode.Migrated, source.WaitForExit(Timeout));
        log.WriteLine(source.Stderr + destination.Stderr);
        Assert.Contains("1 vsock sockets handed over", source.Stderr);
        Assert.Contains("1 vsock sockets handed over", destination.Stderr);

        // The old VMM left the socket file in place: the same socket (never bound again) listens on in the new VMM.
        Assert.True(File.Exists(uds), "the socket file is still there");
        Assert.Equal(inode, StatInode(uds));
        pending.ReceiveTimeout = 10000;
        Assert.Equal(0, pending.Receive(new byte[16])); // reset: the old VMM closed it
        // The guest is told its connections are gone (a transport reset, as after a restore), and answers on the path.
        destination.Stdin.Write("vsock cid\n");
        destination.Stdin.Flush();
        Assert.True(destination.WaitForStdout("vsock: transport reset (cid 3)", Timeout), destination.Stdout + destination.Stderr);
        Echo(destination, uds, 5001, "after");
        using (var control = new ControlClient(dir.File("dst.sock"), TimeSpan.FromSeconds(30)))
        {
            Assert.Equal(destination.Pid, control.Ok("describe").GetProperty("pid").GetInt32());
            control.Ok("stop", "\"graceful\": false");
        }
        destination.WaitForExit(Timeout);
        Assert.False(File.Exists(uds), "the new VMM owned the path once it ran the VM, and removed it when it stopped");
    }

    [Fact]
    public void ANewVmmThatRefusesTheVsockSocketLeavesTheOldOneListening()
    {
        using var dir = new TempDir();
        string uds = dir.File("v.sock");
        using var source = new VmmProcess(["--memfd", "on", "--device", $"vsock,guest_cid=3,uds_path={uds}", "--control-socket", dir.File("src.sock"), "--cmdline", "kvmps.run=vsock cid"], redirectStdin: true);
        Assert.True(source.WaitForStdout("vsock: cid 3", Timeout), source.Stdout + source.Stderr);
        // The new VMM's configuration names another path: the socket handed over is not bound there.
        string uri = "unix:" + dir.File("up.sock");
        using var destination = new VmmProcess(["--memfd", "on", "--device", $"vsock,guest_cid=3,uds_path={dir.File("other.sock")}", "--incoming", uri, "--control-socket", dir.File("dst.sock")]);
        WaitListening(destination);
        using var control = new ControlClient(dir.File("src.sock"));
        control.Ok("migrate", $"\"uri\": \"{uri}\"");
        JsonStatus(control, out string phase, out string? error);
        log.WriteLine(source.Stderr + destination.Stderr);
        Assert.Equal(MigrationPhases.Failed, phase);
        Assert.Contains("another path", error);
        Assert.Equal(VmmExitCode.IncomingFailed, destination.WaitForExit(Timeout));
        // The refusing VMM closed its copy without shutting the socket down or removing its file: the old VMM answers.
        Assert.False(source.HasExited);
        Assert.True(File.Exists(uds));
        Echo(source, uds, 5002, "still");
        control.Ok("stop", "\"graceful\": false");
        source.WaitForExit(Timeout);
    }

    private static long StatInode(string path)
    {
        var (code, output) = Run("stat", "-c", "%i", path);
        Assert.True(code == 0, output);
        return long.Parse(output.Trim());
    }

    private static (int, string) Run(string tool, params string[] args)
    {
        var psi = new System.Diagnostics.ProcessStartInfo(tool) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = System.Diagnostics.Process.Start(psi)!;
        string output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, output);
    }
}
