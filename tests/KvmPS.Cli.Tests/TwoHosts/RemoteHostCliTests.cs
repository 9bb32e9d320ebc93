using System.Text.Json;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Remote;
using KvmPS.Management.Store;
using KvmPS.Management.Tests;

namespace KvmPS.Cli.Tests.TwoHosts;

/// <summary>
/// <c>kvmps --host</c> between the two namespace hosts: the kvmps process runs on h1 (in its namespace, with its
/// store) and reaches h2's real sshd; the VM lives in h2's store only.
/// </summary>
[Collection(TwoHostCollection.Name)]
public sealed class RemoteHostCliTests(TwoHostFixture hosts)
{
    private string H2 => "root@" + hosts.Host2.Address;

    private Dictionary<string, string> Key(string path) => new() { ["KVMPS_SSH_KEY"] = path };

    private static void NewVmIn(TestHost host, string name)
    {
        var manager = new VmManager(VmStore.Open(host.StoreHome));
        if (manager.TryGet(name) is null)
            manager.New(TestDefinitions.Minimal(name));
    }

    [TwoHostFact]
    public void Vm_list_with_host_lists_the_vm_of_the_remote_store_and_not_the_local_one()
    {
        NewVmIn(hosts.Host2, "only-on-h2");

        var (code, output, error) = hosts.Kvmps(hosts.Host1, null, "--host", H2, "--identity", hosts.ClientKeyPath, "vm", "list");
        Assert.True(code == 0, $"exit {code}: {error}");
        Assert.Contains("only-on-h2", output);
        Assert.Contains("Off", output);

        // The same command without --host runs on h1, whose store does not have it.
        (code, output, error) = hosts.Kvmps(hosts.Host1, null, "vm", "list");
        Assert.True(code == 0, $"exit {code}: {error}");
        Assert.DoesNotContain("only-on-h2", output);

        // KVMPS_HOST and KVMPS_SSH_KEY name the host and key instead of the options; --json passes through.
        (code, output, error) = hosts.Kvmps(hosts.Host1, new Dictionary<string, string> { ["KVMPS_HOST"] = H2, ["KVMPS_SSH_KEY"] = hosts.ClientKeyPath },
            "vm", "list", "--json");
        Assert.True(code == 0, $"exit {code}: {error}");
        using var json = JsonDocument.Parse(output);
        var vm = Assert.Single(json.RootElement.EnumerateArray(), v => v.GetProperty("name").GetString() == "only-on-h2");
        Assert.StartsWith(hosts.Host2.StoreHome, vm.GetProperty("directory").GetString());
    }

    [TwoHostFact]
    public void The_remote_exit_status_and_message_are_the_commands_own()
    {
        var (code, _, error) = hosts.Kvmps(hosts.Host1, Key(hosts.ClientKeyPath), "--host", H2, "vm", "start", "no-such-vm");
        Assert.Equal(ExitCodes.VmNotFound, code);
        Assert.Contains("no-such-vm", error);

        (code, _, error) = hosts.Kvmps(hosts.Host1, Key(hosts.ClientKeyPath), "--host", H2, "vm", "frobnicate");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("unknown subcommand 'frobnicate'", error);
    }

    [TwoHostFact]
    public void A_key_the_host_does_not_accept_is_exit_status_7_naming_the_host()
    {
        var (code, output, error) = hosts.Kvmps(hosts.Host1, null, "--host", H2, "--identity", hosts.OtherKeyPath, "vm", "list");
        Assert.Equal(ExitCodes.RemoteHost, code);
        Assert.Equal("", output);
        Assert.Contains($"Host '{H2}' refused the SSH key", error);
    }

    [TwoHostFact]
    public void An_unreachable_host_and_a_host_without_kvmps_are_exit_status_7_naming_the_host()
    {
        // Nothing listens on h1's loopback port 22: refused at once.
        var (code, _, error) = hosts.Kvmps(hosts.Host1, Key(hosts.ClientKeyPath), "--host", "127.0.0.1", "vm", "list");
        Assert.Equal(ExitCodes.RemoteHost, code);
        Assert.Contains("Host '127.0.0.1' is unreachable over SSH", error);
        Assert.Contains("Connection refused", error);

        (code, _, error) = hosts.Kvmps(hosts.Host1, new Dictionary<string, string>
        {
            ["KVMPS_SSH_KEY"] = hosts.ClientKeyPath,
            ["KVMPS_REMOTE_KVMPS"] = "/nonexistent/kvmps",
        }, "--host", H2, "vm", "list");
        Assert.Equal(ExitCodes.RemoteHost, code);
        Assert.Contains($"Host '{H2}' has no usable '/nonexistent/kvmps'", error);
    }

    [TwoHostFact]
    public void Remote_kvmps_through_the_transport_returns_vms_that_name_their_host()
    {
        NewVmIn(hosts.Host2, "listed-on-h2");
        var transport = new SshTransport(new SshTransportOptions
        {
            SshProgram = hosts.SshFrom(hosts.Host1),
            ConfigFilePath = hosts.SshConfigPath,
            KeyFilePath = hosts.ClientKeyPath,
        });
        var remote = new RemoteKvmps(SshTarget.Parse(H2), transport);

        var vm = Assert.Single(remote.List(), v => v.Name == "listed-on-h2");
        Assert.Equal((H2, VmState.Off), (vm.HostName, vm.State));

        var failure = Assert.Throws<RemoteCommandFailedException>(() => remote.Start("absent-on-h2"));
        Assert.True(failure.IsVmNotFound, failure.Message);
        Assert.Contains(H2, failure.Message);

        var refused = new RemoteKvmps(SshTarget.Parse(H2), new SshTransport(transport.Options with { KeyFilePath = hosts.OtherKeyPath }));
        var error = Assert.Throws<RemoteAuthenticationException>(() => refused.List());
        Assert.Equal(H2, error.HostName);
    }

    [TwoHostFact]
    public void Apply_runs_a_manifest_naming_a_host_there_and_the_others_here()
    {
        var remoteManifest = Path.Combine(hosts.Directory, "h2-vms.psd1");
        File.WriteAllText(remoteManifest, $$"""
            @{
                HostName        = '{{H2}}'
                VirtualMachines = @( @{ Name = 'applied-on-h2'; MemoryStartupBytes = 64MB; State = 'Off' } )
            }
            """);
        var localManifest = Path.Combine(hosts.Directory, "h1-vms.psd1");
        File.WriteAllText(localManifest, """
            @{ VirtualMachines = @( @{ Name = 'applied-on-h1'; MemoryStartupBytes = 64MB; State = 'Off' } ) }
            """);

        var (code, output, error) = hosts.Kvmps(hosts.Host1, Key(hosts.ClientKeyPath), "apply", remoteManifest, localManifest);
        Assert.True(code == 0, $"exit {code}: {output} {error}");
        Assert.Contains($"== host {H2}: {remoteManifest}", output);
        Assert.Equal(["applied-on-h2"], new VmManager(VmStore.Open(hosts.Host2.StoreHome)).List().Select(v => v.Name).Where(n => n.StartsWith("applied-")));
        Assert.Equal(["applied-on-h1"], new VmManager(VmStore.Open(hosts.Host1.StoreHome)).List().Select(v => v.Name).Where(n => n.StartsWith("applied-")));

        (code, output, error) = hosts.Kvmps(hosts.Host1, Key(hosts.ClientKeyPath), "test", remoteManifest, localManifest);
        Assert.True(code == 0, $"exit {code}: {output} {error}");

        // The remote host refusing the key fails that manifest with exit 7; the local one still runs.
        (code, _, error) = hosts.Kvmps(hosts.Host1, Key(hosts.OtherKeyPath), "test", remoteManifest, localManifest);
        Assert.Equal(ExitCodes.RemoteHost, code);
        Assert.Contains($"{remoteManifest}: Host '{H2}' refused the SSH key", error);
    }
}
