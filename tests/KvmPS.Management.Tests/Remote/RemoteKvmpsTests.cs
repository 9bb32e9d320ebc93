using KvmPS.Management.Lifecycle;
using KvmPS.Management.Remote;

namespace KvmPS.Management.Tests.Remote;

/// <summary>RemoteKvmps reads the remote kvmps's JSON into VMs that name their host, and refuses anything else.</summary>
public sealed class RemoteKvmpsTests
{
    private const string VmJson = """
        [{"name":"web","state":"Running","stateReason":null,"pid":42,"vcpuCount":2,"vcpuMaximum":4,"memoryStartupBytes":134217728,
          "memoryMinimumBytes":134217728,"memoryMaximumBytes":134217728,"liveVcpus":2,"liveMemoryBytes":134217728,"uptimeSeconds":1.5,
          "autostart":true,"boot":"built-in","notes":"n","directory":"/s/vms/web","serialLog":"/s/vms/web/serial.log"}]
        """;

    private static (RemoteKvmps Remote, FakeSsh Ssh) With(string kvmpsBody)
    {
        var ssh = FakeSsh.RunLocally();
        var kvmps = ssh.Script("kvmps", kvmpsBody);
        return (new RemoteKvmps(SshTarget.Parse("root@h2"), new SshTransport(new SshTransportOptions { SshProgram = ssh.Program, RemoteKvmps = kvmps })), ssh);
    }

    [Fact]
    public void List_reads_every_vm_with_the_host_it_is_on()
    {
        var (remote, ssh) = With($"cat <<'EOF'\n{VmJson}\nEOF");
        using (ssh)
        {
            var vm = Assert.Single(remote.List());
            Assert.Equal(("root@h2", "web", VmState.Running, 42, 2, 4, 134217728L, true), (vm.HostName, vm.Name, vm.State, vm.Pid, vm.VcpuCount, vm.VcpuMaximum, vm.MemoryStartupBytes, vm.Autostart));
            Assert.Equal(TimeSpan.FromSeconds(1.5), vm.Uptime);
            Assert.Contains("'vm' 'list' '--json'", File.ReadAllText(ssh.ArgumentsFile));
        }
    }

    [Fact]
    public void Stop_with_turn_off_passes_force_and_the_name_after_double_dash()
    {
        var (remote, ssh) = With("printf '%s\\n' \"$@\" > \"$(dirname \"$0\")/kvmps-args\"; echo '{\"name\":\"-odd\",\"state\":\"Off\",\"vcpuCount\":1,\"vcpuMaximum\":1,\"memoryStartupBytes\":1,\"memoryMinimumBytes\":1,\"memoryMaximumBytes\":1}'");
        using (ssh)
        {
            var vm = remote.Stop("-odd", turnOff: true);
            Assert.Equal((VmState.Off, "-odd"), (vm.State, vm.Name));
            Assert.Equal("vm\nstop\n--json\n--force\n--\n-odd\n", File.ReadAllText(Path.Combine(ssh.Directory, "kvmps-args")));
        }
    }

    [Fact]
    public void A_failing_remote_command_carries_its_exit_status_and_message_without_the_prefix()
    {
        var (remote, ssh) = With("echo \"kvmps: VM 'db' was not found in the store at /s\" >&2; exit 5");
        using (ssh)
        {
            var e = Assert.Throws<RemoteCommandFailedException>(() => remote.Start("db"));
            Assert.True(e.IsVmNotFound);
            Assert.Equal("VM 'db' was not found in the store at /s", e.RemoteMessage);
            Assert.Equal("On host 'root@h2': VM 'db' was not found in the store at /s (kvmps exit status 5)", e.Message);
        }
    }

    [Theory]
    [InlineData("echo not json", "printed no JSON")]
    [InlineData("echo '{}'", "did not print an array")]
    [InlineData("echo '[{\"name\":\"x\",\"state\":\"Hovering\"}]'", "unknown VM state 'Hovering'")]
    [InlineData("echo '[{\"name\":\"x\",\"state\":\"Off\"}]'", "no 'vcpuCount'")]
    [InlineData("echo '[{\"name\":7,\"state\":\"Off\"}]'", "'name' is Number")]
    public void An_answer_that_is_not_kvmps_json_is_a_protocol_error_naming_the_host(string body, string detail)
    {
        var (remote, ssh) = With(body);
        using (ssh)
        {
            var e = Assert.Throws<RemoteProtocolException>(() => remote.List());
            Assert.Contains("host 'root@h2'", e.Message);
            Assert.Contains(detail, e.Message);
        }
    }
}
