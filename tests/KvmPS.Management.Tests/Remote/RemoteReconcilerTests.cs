using KvmPS.Management.DesiredState;
using KvmPS.Management.Remote;
using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Management.Tests.Remote;

/// <summary>ManifestRouting splits files by their HostName; RemoteReconciler runs one manifest on that host and reads its JSON.</summary>
public sealed class RemoteReconcilerTests : IDisposable
{
    private readonly TempDirectory _directory = new();

    public void Dispose() => _directory.Dispose();

    private string Manifest(string name, string text)
    {
        var path = Path.Combine(_directory.Path, name);
        File.WriteAllText(path, text);
        return path;
    }

    [Fact]
    public void Split_sends_files_naming_a_host_there_and_keeps_the_others_and_missing_files_here()
    {
        var local = Manifest("local.psd1", "@{ VirtualMachines = @() }");
        var remote = Manifest("remote.psd1", "@{ HostName = 'h2'; VirtualMachines = @() }");
        var withUser = Manifest("user.psd1", "@{ HostName = 'admin@h3'; VirtualMachines = @() }");
        var missing = Path.Combine(_directory.Path, "missing.psd1");

        var routed = ManifestRouting.Split([local, remote, withUser, missing], defaultUserName: "root");

        Assert.Equal([local, missing], routed.LocalFiles);
        Assert.Equal([(remote, "root@h2"), (withUser, "admin@h3")], routed.Remote.Select(r => (r.Path, r.Host.ToString())));
    }

    [Fact]
    public void Split_refuses_a_host_name_ssh_would_read_as_an_option_at_its_position()
    {
        var bad = Manifest("bad.psd1", "@{\n    HostName = '-oProxyCommand=x'\n    VirtualMachines = @()\n}");
        var e = Assert.Throws<DesiredStateException>(() => ManifestRouting.Split([bad]));
        Assert.Contains($"{bad}:2:", e.Message);
    }

    private static (RemoteReconciler Reconciler, FakeSsh Ssh) With(string kvmpsBody)
    {
        var ssh = FakeSsh.RunLocally();
        // The fake remote kvmps records its arguments and the manifest it read on stdin, then answers as scripted.
        var kvmps = ssh.Script("kvmps", $"printf '%s\\n' \"$@\" > \"$(dirname \"$0\")/kvmps-args\"; cat > \"$(dirname \"$0\")/kvmps-stdin\"\n{kvmpsBody}");
        var transport = new SshTransport(new SshTransportOptions { SshProgram = ssh.Program, RemoteKvmps = kvmps });
        return (new RemoteReconciler(new RemoteKvmps(SshTarget.Parse("root@h2"), transport)), ssh);
    }

    private static string Answer(string json) => $"cat <<'EOF'\n{json}\nEOF";

    [Fact]
    public void Plan_sends_the_manifest_on_stdin_and_reads_the_steps()
    {
        var (reconciler, ssh) = With(Answer("""
            {"inDesiredState":false,"actions":[{"kind":"Start","vmName":"web","description":"Start VM 'web'","reason":"State is Off","changes":[]}],
             "drift":[{"vmName":"web","property":"State","expected":"Running","actual":"Off"}],"warnings":["w1"]}
            """));
        using (ssh)
        {
            var plan = reconciler.Plan("@{ HostName = 'h2' }");
            var action = Assert.Single(plan.Actions);
            Assert.Equal((ReconcileActionKind.Start, "web", "Start VM 'web'"), (action.Kind, action.VmName, action.Description));
            Assert.Equal(new Drift("web", "State", "Running", "Off"), Assert.Single(plan.Drifts));
            Assert.Equal(["w1"], plan.Warnings);
            Assert.Equal("plan\n--json\n-\n", File.ReadAllText(Path.Combine(ssh.Directory, "kvmps-args")));
            Assert.Equal("@{ HostName = 'h2' }", File.ReadAllText(Path.Combine(ssh.Directory, "kvmps-stdin")));
        }
    }

    [Fact]
    public void Set_reads_a_failed_step_from_the_answer_printed_with_exit_status_4()
    {
        var (reconciler, ssh) = With(Answer("""
            {"succeeded":false,"changed":true,"results":[
              {"kind":"Create","vmName":"web","description":"Create VM 'web'","status":"Done","message":"created"},
              {"kind":"Start","vmName":"web","description":"Start VM 'web'","status":"Failed","message":"no kvm"}],"warnings":[]}
            """) + "\nexit 4");
        using (ssh)
        {
            var result = reconciler.Set("@{}");
            Assert.Equal("root@h2", result.HostName);
            Assert.False(result.Succeeded);
            Assert.Equal([ReconcileActionStatus.Done, ReconcileActionStatus.Failed], result.Results.Select(r => r.Status));
            var error = Assert.IsType<RemoteCommandFailedException>(result.Results[1].Error);
            Assert.Contains("no kvm", error.Message);
            Assert.Contains("root@h2", error.Message);
        }
    }

    [Fact]
    public void Test_reads_drift_from_the_answer_printed_with_exit_status_1_but_a_manifest_error_is_a_failure()
    {
        var (reconciler, ssh) = With(Answer("""{"inDesiredState":false,"drift":[{"vmName":"db","property":"Ensure","expected":"Present","actual":null}]}""") + "\nexit 1");
        using (ssh)
            Assert.Equal([new Drift("db", "Ensure", "Present", null)], reconciler.Test("@{}"));

        var (refusing, ssh2) = With("echo \"kvmps: <stdin>:1:3: HostName: ...\" >&2; exit 3");
        using (ssh2)
        {
            var e = Assert.Throws<RemoteCommandFailedException>(() => refusing.Test("@{}"));
            Assert.Equal(3, e.ExitCode);
            Assert.Contains("<stdin>:1:3", e.Message);
        }
    }

    [Fact]
    public void Get_reads_each_vm_with_its_host_and_a_missing_field_is_a_protocol_error_naming_it()
    {
        var (reconciler, ssh) = With(Answer("""
            {"inDesiredState":true,"vms":[{"name":"web","ensure":"Present","desiredState":"Off","exists":true,"inDesiredState":true,
              "actual":{"name":"web","state":"Off","vcpuCount":1,"vcpuMaximum":1,"memoryStartupBytes":67108864,"memoryMinimumBytes":67108864,"memoryMaximumBytes":67108864},
              "drift":[]}],
             "unmanaged":[]}
            """));
        using (ssh)
        {
            var vm = Assert.Single(reconciler.Get("@{}").Vms);
            Assert.Equal(("root@h2", "web", "Present", "Off", true), (vm.HostName, vm.Name, vm.Ensure, vm.DesiredState, vm.InDesiredState));
            Assert.Equal(("root@h2", 67108864L), (vm.Actual!.HostName, vm.Actual.MemoryStartupBytes));
        }

        var (broken, ssh2) = With(Answer("""{"vms":[{"name":"web"}],"unmanaged":[]}"""));
        using (ssh2)
            Assert.Contains("'ensure'", Assert.Throws<RemoteProtocolException>(() => broken.Get("@{}")).Message);
    }
}
