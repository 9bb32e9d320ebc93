using System.Text.Json;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Cli.Tests;

/// <summary>kvmps vm snapshot/save on a running VM with the real kvmps-vmm: checkpoint, save, resume, restore.</summary>
[Collection(VmmCollection.Name)]
public sealed class SnapshotCliVmmTests : IDisposable
{
    private readonly LifecycleSandbox _sandbox;

    public SnapshotCliVmmTests(VmmFixture fixture) => _sandbox = new LifecycleSandbox(fixture);

    public void Dispose() => _sandbox.Dispose();

    private (int Code, string Out, string Err) Run(params string[] args) => CliRun.With(_sandbox.Manager, "", args);

    [Fact]
    public void A_running_VM_is_checkpointed_saved_resumed_and_restored()
    {
        _sandbox.Manager.New(_sandbox.GuestWithCmdline("clivm", "kvmps.run=work 4"));
        Assert.Equal(0, Run("vm", "start", "clivm").Code);
        LifecycleSandbox.WaitForSerial(_sandbox.Store.SerialLogPath("clivm"), "work: count 3", 60);

        var (code, output, error) = Run("vm", "snapshot", "create", "clivm", "live", "--json");
        Assert.True(code == 0, error);
        using (var json = JsonDocument.Parse(output))
        {
            Assert.True(json.RootElement.GetProperty("includesMemory").GetBoolean());
            Assert.Equal("Running", json.RootElement.GetProperty("vmState").GetString());
        }

        (code, output, error) = Run("vm", "save", "clivm");
        Assert.True(code == 0, error);
        Assert.Contains("is Saved", output);
        Assert.Contains("Saved", Run("vm", "list").Out);

        (code, output, error) = Run("vm", "start", "clivm");
        Assert.True(code == 0, error);
        Assert.Contains("is Running", output);

        (code, output, error) = Run("vm", "snapshot", "restore", "clivm", "live");
        Assert.True(code == 0, error);
        Assert.Contains("restored to checkpoint 'live'; it is Running", output);
        Assert.Equal(VmState.Running, _sandbox.Manager.Get("clivm").State);

        // A checkpoint with memory has no disk snapshots here, so it can go while the VM runs.
        Assert.Equal(0, Run("vm", "snapshot", "remove", "clivm", "live").Code);
    }
}
