using System.Text.Json;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Remote;
using KvmPS.Management.Store;

namespace KvmPS.Cli.Tests.TwoHosts;

/// <summary>
/// How a move's stream goes (docs/migration.md, "Moving a VM to another host"): straight over TCP across the veth by
/// default (the destination VMM listening on h2's veth address, the sender presenting the one-time token), through
/// ssh with --tunnel; a port the source cannot reach fails clearly and changes nothing; a paused VM moves and stays
/// paused; and a move whose source is a remote host (Move-KvmVm -HostName's path: RemoteKvmps.Move).
/// </summary>
public sealed partial class MoveCliTests
{
    private static string VmmLog(TestHost host, string name)
    {
        var path = VmStore.Open(host.StoreHome).VmmLogPath(name);
        return File.Exists(path) ? File.ReadAllText(path) : "";
    }

    [TwoHostVmFact]
    public void By_default_the_stream_goes_straight_over_tcp_to_h2s_veth_address()
    {
        StartOnHost1("direct", "kvmps.run=work 4");
        WaitForCount(hosts.Host1, "direct", 3);
        var before = Counts(Serial(hosts.Host1, "direct"))[^1];

        var (code, text, error) = hosts.KvmpsWithin(TimeSpan.FromMinutes(3), hosts.Host1, Key(hosts.ClientKeyPath), "vm", "migrate", "direct", "--to", H2, "--json");
        Assert.True(code == 0, $"vm migrate: exit {code}: {text} {error}");
        using var json = JsonDocument.Parse(text);
        Assert.Equal("tcp", json.RootElement.GetProperty("transport").GetString());
        var uri = json.RootElement.GetProperty("stream_uri").GetString()!;
        Assert.StartsWith($"tcp:{hosts.Host2.Address}:", uri);
        Assert.False(json.RootElement.GetProperty("paused").GetBoolean());
        // h2's VMM listened on its veth address (the server side of the ssh connection), not on loopback or a socket file.
        var log = VmmLog(hosts.Host2, "direct");
        Assert.Contains($"waiting for a migration stream on {uri}", log);
        Assert.Contains($"received the VM from {uri}", log);
        Assert.DoesNotContain("refused a migration connection", log);
        Assert.False(File.Exists(Path.Combine(VmStore.Open(hosts.Host2.StoreHome).VmDirectory("direct"), "incoming.token")), "the token file is gone");

        WaitForCount(hosts.Host2, "direct", before + 3);
        Assert.DoesNotContain("FAILED", Serial(hosts.Host2, "direct"));
        Assert.DoesNotContain("KvmPS built-in guest", Serial(hosts.Host2, "direct"));
        Assert.Null(Manager(hosts.Host1).TryGet("direct"));
        (code, _, error) = hosts.Kvmps(hosts.Host1, Key(hosts.ClientKeyPath), "--host", H2, "vm", "stop", "--force", "direct");
        Assert.True(code == 0, $"vm stop on h2: exit {code}: {error}");
    }

    [TwoHostVmFact]
    public void With_tunnel_the_stream_goes_through_ssh_to_a_unix_socket()
    {
        StartOnHost1("tunneled", "kvmps.run=work 4");
        WaitForCount(hosts.Host1, "tunneled", 3);
        var (code, text, error) = hosts.KvmpsWithin(TimeSpan.FromMinutes(3), hosts.Host1, Key(hosts.ClientKeyPath), "vm", "migrate", "tunneled", "--to", H2, "--tunnel", "--json");
        Assert.True(code == 0, $"vm migrate --tunnel: exit {code}: {text} {error}");
        using var json = JsonDocument.Parse(text);
        Assert.Equal("ssh-tunnel", json.RootElement.GetProperty("transport").GetString());
        Assert.StartsWith("tcp:127.0.0.1:", json.RootElement.GetProperty("stream_uri").GetString());
        var socket = Path.Combine(VmStore.Open(hosts.Host2.StoreHome).VmDirectory("tunneled"), VmManager.ReceiveSocketFileName);
        Assert.Contains($"waiting for a migration stream on unix:{socket}", VmmLog(hosts.Host2, "tunneled"));
        Assert.Equal(VmState.Running, Manager(hosts.Host2).Get("tunneled").State);
        Assert.Null(Manager(hosts.Host1).TryGet("tunneled"));
        hosts.Kvmps(hosts.Host1, Key(hosts.ClientKeyPath), "--host", H2, "vm", "stop", "--force", "tunneled");
    }

    /// <summary>
    /// A port h1 cannot reach (h2's VMM listens on h2's own loopback: from h1, 127.0.0.1 is h1): the error names the host
    /// and the address and points to --tunnel; the VM runs on at h1 and h2 keeps nothing.
    /// </summary>
    [TwoHostVmFact]
    public void A_port_the_source_cannot_reach_fails_clearly_and_changes_nothing()
    {
        StartOnHost1("walled", "kvmps.run=work 4");
        WaitForCount(hosts.Host1, "walled", 2);
        var (code, text, error) = hosts.KvmpsWithin(TimeSpan.FromMinutes(3), hosts.Host1, Key(hosts.ClientKeyPath),
            "vm", "migrate", "walled", "--to", H2, "--migration-address", "127.0.0.1");
        Assert.True(code == ExitCodes.OperationFailed, $"exit {code}: {text} {error}");
        Assert.Contains($"host '{H2}' cannot be reached at 127.0.0.1:", error);
        Assert.Contains("-Tunnel (--tunnel)", error);
        Assert.Contains("the VM runs on here", error);

        Assert.Equal(VmState.Running, Manager(hosts.Host1).Get("walled").State);
        var last = Counts(Serial(hosts.Host1, "walled"))[^1];
        WaitForCount(hosts.Host1, "walled", last + 2);
        Assert.Null(Manager(hosts.Host2).TryGet("walled"));
        Assert.False(Directory.Exists(Path.Combine(hosts.Host2.StoreHome, "vms", "walled")));
    }

    [TwoHostVmFact]
    public void A_paused_vm_moves_and_stays_paused_on_h2()
    {
        StartOnHost1("sleeper", "kvmps.run=work 4");
        WaitForCount(hosts.Host1, "sleeper", 3);
        var (code, _, error) = hosts.Kvmps(hosts.Host1, null, "vm", "suspend", "sleeper");
        Assert.True(code == 0, $"vm suspend: exit {code}: {error}");
        var before = Counts(Serial(hosts.Host1, "sleeper"))[^1];

        (code, var text, error) = hosts.KvmpsWithin(TimeSpan.FromMinutes(3), hosts.Host1, Key(hosts.ClientKeyPath), "vm", "migrate", "sleeper", "--to", H2, "--json");
        Assert.True(code == 0, $"vm migrate (paused): exit {code}: {text} {error}");
        using (var json = JsonDocument.Parse(text))
            Assert.True(json.RootElement.GetProperty("paused").GetBoolean());
        Assert.Equal(VmState.Paused, Manager(hosts.Host2).Get("sleeper").State);
        Thread.Sleep(1000);
        Assert.Empty(Counts(Serial(hosts.Host2, "sleeper"))); // paused: the guest did not run there

        (code, _, error) = hosts.Kvmps(hosts.Host1, Key(hosts.ClientKeyPath), "--host", H2, "vm", "resume", "sleeper");
        Assert.True(code == 0, $"vm resume on h2: exit {code}: {error}");
        WaitForCount(hosts.Host2, "sleeper", before + 2);
        Assert.True(Counts(Serial(hosts.Host2, "sleeper"))[0] > before);
        Assert.DoesNotContain("FAILED", Serial(hosts.Host2, "sleeper"));
        hosts.Kvmps(hosts.Host1, Key(hosts.ClientKeyPath), "--host", H2, "vm", "stop", "--force", "sleeper");
    }

    /// <summary>
    /// The source is remote (Move-KvmVm -HostName h1 from h2's namespace): kvmps vm migrate runs on h1 through ssh and
    /// reaches h2 with h1's own ssh setup; its progress lines come back as they happen.
    /// </summary>
    [TwoHostVmFact]
    public void A_move_whose_source_is_a_remote_host_runs_there_and_reports_progress()
    {
        StartOnHost1("remote-src", "kvmps.run=work 4");
        WaitForCount(hosts.Host1, "remote-src", 3);
        var source = new RemoteKvmps(SshTarget.Parse("root@" + hosts.Host1.Address), new SshTransport(new SshTransportOptions
        {
            SshProgram = hosts.SshFrom(hosts.Host2),
            ConfigFilePath = hosts.SshConfigPath,
            KeyFilePath = hosts.ClientKeyPath,
        }));
        var reports = new List<OperationProgress>();
        var result = source.Move("remote-src", H2, new VmMoveOptions(), new Collect(reports));
        Assert.Equal(H2, result.DestinationHost);
        Assert.Equal("tcp", result.Transport);
        Assert.Contains(reports, r => r.Status.StartsWith("Starting the receiving VMM", StringComparison.Ordinal));
        Assert.Contains(reports, r => r.PercentComplete == 100);
        Assert.Equal(VmState.Running, Manager(hosts.Host2).Get("remote-src").State);
        Assert.Equal(result.DestinationPid, Manager(hosts.Host2).Get("remote-src").Pid);
        Assert.Null(Manager(hosts.Host1).TryGet("remote-src"));

        // A VM h1 does not have: the remote kvmps's "not found", typed.
        var missing = Assert.Throws<RemoteCommandFailedException>(() => source.Move("remote-src", H2, new VmMoveOptions()));
        Assert.True(missing.IsVmNotFound, missing.Message);
        hosts.Kvmps(hosts.Host1, Key(hosts.ClientKeyPath), "--host", H2, "vm", "stop", "--force", "remote-src");
    }

    private sealed class Collect(List<OperationProgress> into) : IProgress<OperationProgress>
    {
        public void Report(OperationProgress value) => into.Add(value);
    }
}
