using KvmPS.Contract;
using KvmPS.Management.Definitions;
using KvmPS.Management.Tests;
using KvmPS.Management.Tests.TestSupport;
using KvmPS.Management.Vmm;

namespace KvmPS.Cli.Tests;

/// <summary><c>kvmps vm attach-disk|detach-disk</c> on a running built-in guest with the real kvmps-vmm.</summary>
[Collection(VmmCollection.Name)]
public sealed class DeviceCliVmmTests : IDisposable
{
    private readonly LifecycleSandbox _sandbox;

    public DeviceCliVmmTests(VmmFixture fixture) => _sandbox = new LifecycleSandbox(fixture);

    public void Dispose() => _sandbox.Dispose();

    private (int Code, string Out, string Err) Run(params string[] args) => CliRun.With(_sandbox.Manager, "", args);

    private int LiveDisks(string name)
    {
        using var client = VmmClient.Connect(_sandbox.Store.SocketPath(name));
        return client.Describe().Devices.Count(d => d.Type == BlockDeviceSpec.TypeName);
    }

    [Fact]
    public void Attach_disk_and_detach_disk_act_on_the_running_vm_in_the_same_vmm()
    {
        _sandbox.Manager.New(TestDefinitions.Minimal("clidisk") with { Memory = MemorySettings.Fixed(64L << 20) });
        var pid = _sandbox.Manager.Start("clidisk").Pid;

        var (code, output, error) = Run("vm", "attach-disk", "clidisk", "d.qcow2", "--size", "4M", "--live");
        Assert.True(code == 0, error);
        Assert.Contains("(applied to the running VM and stored)", output);
        Assert.Equal(1, LiveDisks("clidisk"));

        (code, output, error) = Run("vm", "detach-disk", "clidisk", "d.qcow2", "--timeout", "30");
        Assert.True(code == 0, error);
        Assert.Contains("(applied to the running VM and stored)", output);
        Assert.Equal(0, LiveDisks("clidisk"));
        Assert.Empty(_sandbox.Store.Get("clidisk").Disks);
        Assert.Equal(pid, _sandbox.Manager.Get("clidisk").Pid);
    }
}
