using System.Text.Json;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Cli.Tests;

/// <summary>kvmps vm upgrade with the real kvmps-vmm: the running VM moves into a new VMM process and its guest counts on.</summary>
[Collection(VmmCollection.Name)]
public sealed class UpgradeCliVmmTests : IDisposable
{
    private readonly LifecycleSandbox _sandbox;

    public UpgradeCliVmmTests(VmmFixture fixture) => _sandbox = new LifecycleSandbox(fixture);

    public void Dispose() => _sandbox.Dispose();

    private (int Code, string Out, string Err) Run(params string[] args) => CliRun.With(_sandbox.Manager, "", args);

    [Fact]
    public void Upgrade_by_name_and_all_moves_running_VMs_into_new_VMMs()
    {
        _sandbox.Manager.New(_sandbox.GuestWithCmdline("cliup", "kvmps.run=work 4"));
        _sandbox.Manager.New(_sandbox.GuestWithCmdline("cliidle", "kvmps.run=work 4"));
        Assert.Equal(0, Run("vm", "start", "cliup").Code);
        var serial = _sandbox.Store.SerialLogPath("cliup");
        LifecycleSandbox.WaitForSerial(serial, "work: count 3", 60);
        var oldPid = _sandbox.Manager.Get("cliup").Pid!.Value;

        var (code, output, error) = Run("vm", "upgrade", "cliup", "--json");
        Assert.True(code == 0, error);
        int newPid;
        using (var json = JsonDocument.Parse(output))
        {
            var vm = Assert.Single(json.RootElement.EnumerateArray());
            Assert.True(vm.GetProperty("upgraded").GetBoolean());
            Assert.Equal(oldPid, vm.GetProperty("old_pid").GetInt32());
            newPid = vm.GetProperty("new_pid").GetInt32();
            Assert.NotEqual(oldPid, newPid);
            Assert.True(vm.GetProperty("memory_shared").GetBoolean());
        }
        Assert.Equal(newPid, _sandbox.Manager.Get("cliup").Pid);
        var counted = File.ReadAllText(serial).Split("work: count").Length;
        LifecycleSandbox.WaitForSerial(serial, $"work: count {counted + 2}", 60);

        // --all takes the running VMs only (cliidle is off): one line, the new pid again replaced.
        (code, output, error) = Run("vm", "upgrade", "--all");
        Assert.True(code == 0, error);
        Assert.Contains($"VM 'cliup': kvmps-vmm pid {newPid} -> ", output);
        Assert.DoesNotContain("cliidle", output);
        Assert.NotEqual(newPid, _sandbox.Manager.Get("cliup").Pid);
        Assert.Equal(VmState.Running, _sandbox.Manager.Get("cliup").State);

        // A VM that is off is an error naming it, and nothing else happens.
        (code, _, error) = Run("vm", "upgrade", "cliidle");
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("VM 'cliidle' is off", error);
        Assert.Equal(2, Run("vm", "upgrade").Code); // neither a name nor --all
    }

    [Fact]
    public void Upgrade_of_a_VM_with_disks_hands_them_to_the_new_VMM()
    {
        // A raw and a qcow2 disk: their open files go to the new VMM with the memory (docs/migration.md, "Local live upgrade").
        using var sandbox = new LifecycleSandbox(_sandbox.Fixture, new StorageDiskImageCreator());
        sandbox.Manager.New(sandbox.GuestWithCmdline("clidisk", "kvmps.run=work 4") with
        {
            Disks = new[] { new KvmPS.Management.Definitions.DiskDefinition("a.raw", KvmPS.Management.Definitions.DiskFormat.Raw, 1L << 20),
                     new KvmPS.Management.Definitions.DiskDefinition("b.qcow2", KvmPS.Management.Definitions.DiskFormat.Qcow2, 1L << 20) },
        });
        Assert.Equal(0, CliRun.With(sandbox.Manager, "", "vm", "start", "clidisk").Code);
        var serial = sandbox.Store.SerialLogPath("clidisk");
        LifecycleSandbox.WaitForSerial(serial, "work: count 3", 60);
        var oldPid = sandbox.Manager.Get("clidisk").Pid!.Value;

        var (code, output, error) = CliRun.With(sandbox.Manager, "", "vm", "upgrade", "clidisk");
        Assert.True(code == 0, error + output);
        var newPid = sandbox.Manager.Get("clidisk").Pid!.Value;
        Assert.NotEqual(oldPid, newPid);
        Assert.Contains($"VM 'clidisk': kvmps-vmm pid {oldPid} -> {newPid}", output);
        Assert.Equal(VmState.Running, sandbox.Manager.Get("clidisk").State);
        Assert.Contains("2 disks handed over", File.ReadAllText(sandbox.Store.VmmLogPath("clidisk")));
        var counted = File.ReadAllText(serial).Split("work: count").Length;
        LifecycleSandbox.WaitForSerial(serial, $"work: count {counted + 2}", 60);
        Assert.Equal(0, CliRun.With(sandbox.Manager, "", "vm", "stop", "clidisk", "--force").Code);
    }
}
