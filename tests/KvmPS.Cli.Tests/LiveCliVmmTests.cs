using System.Text.Json;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Tests;
using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Cli.Tests;

/// <summary>kvmps vm setvcpus/setmem on a running built-in guest with the real kvmps-vmm.</summary>
[Collection(VmmCollection.Name)]
public sealed class LiveCliVmmTests : IDisposable
{
    private readonly LifecycleSandbox _sandbox;

    public LiveCliVmmTests(VmmFixture fixture) => _sandbox = new LifecycleSandbox(fixture);

    public void Dispose() => _sandbox.Dispose();

    private (int Code, string Out, string Err) Run(params string[] args) => CliRun.With(_sandbox.Manager, "", args);

    [Fact]
    public void Setvcpus_hot_adds_in_the_same_vmm_and_live_beyond_the_maximum_changes_nothing()
    {
        _sandbox.Manager.New(TestDefinitions.Minimal("clihot") with { Memory = MemorySettings.Fixed(64L << 20), Vcpus = new VcpuSettings(1, 4) });
        var pid = _sandbox.Manager.Start("clihot").Pid;

        var (code, output, error) = Run("vm", "setvcpus", "clihot", "3", "--live");
        Assert.True(code == 0, error);
        Assert.Contains("VcpuCount 1 -> 3 (applied to the running VM and stored)", output);
        var info = _sandbox.Manager.Get("clihot");
        Assert.Equal((pid, 3, 3), (info.Pid, info.Live!.Vcpus, info.Definition.Vcpus.Count));

        (code, _, error) = Run("vm", "setvcpus", "clihot", "6", "--live");
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("maximum of 4", error);
        Assert.Equal(3, _sandbox.Store.Get("clihot").Vcpus.Count);

        (code, output, error) = Run("vm", "setvcpus", "clihot", "2", "--config", "--json");
        Assert.True(code == 0, error);
        using (var json = JsonDocument.Parse(output))
            Assert.Equal("RestartNeeded", json.RootElement.GetProperty("changes")[0].GetProperty("application").GetString());
        Assert.Equal(3, _sandbox.Manager.Get("clihot").Live!.Vcpus);

        // Memory: stored; live only where the VMM resizes memory, and --live says so when it cannot.
        (code, _, error) = Run("vm", "setmem", "clihot", "128M", "--live");
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("MemoryStartupBytes", error);
        Assert.Equal(64L << 20, _sandbox.Store.Get("clihot").Memory.StartupBytes);
        (code, output, error) = Run("vm", "setmem", "clihot", "128M");
        Assert.True(code == 0, error);
        Assert.Contains("MemoryStartupBytes 64 MiB -> 128 MiB", output);
        Assert.Equal(pid, _sandbox.Manager.Get("clihot").Pid);
    }

    [Fact]
    public void Setmem_live_resizes_memory_in_the_same_vmm_within_its_maximum_and_refuses_beyond_it()
    {
        _sandbox.Manager.New(TestDefinitions.Minimal("climem") with { Memory = new MemorySettings(256L << 20, 256L << 20, 1L << 30) });
        var pid = _sandbox.Manager.Start("climem").Pid;

        var (code, output, error) = Run("vm", "setmem", "climem", "512M", "--live");
        Assert.True(code == 0, error);
        Assert.Contains("MemoryStartupBytes 256 MiB -> 512 MiB (applied to the running VM and stored)", output);
        using (var client = KvmPS.Management.Vmm.VmmClient.Connect(_sandbox.Store.SocketPath("climem")))
            Assert.Equal(512L << 20, client.GetMemory().RequestedBytes);
        Assert.Equal(pid, _sandbox.Manager.Get("climem").Pid);

        (code, _, error) = Run("vm", "setmem", "climem", "2G", "--live");
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("maximum memory of 1GB", error);
        Assert.Equal(512L << 20, _sandbox.Store.Get("climem").Memory.StartupBytes);

        (code, output, error) = Run("vm", "list", "--json");
        Assert.True(code == 0, error);
        using var json = JsonDocument.Parse(output);
        var vm = json.RootElement[0];
        Assert.Equal((512L << 20, 1L << 30), (vm.GetProperty("liveMemoryRequestedBytes").GetInt64(), vm.GetProperty("liveMemoryMaximumBytes").GetInt64()));
    }

    [Theory]
    [InlineData("512M", 512L << 20)]
    [InlineData("1G", 1L << 30)]
    [InlineData("1.5g", 3L << 29)]
    [InlineData("768MB", 768L << 20)]
    [InlineData("2GiB", 2L << 30)]
    public void Sizes_take_virsh_and_powershell_units(string text, long bytes) => Assert.Equal(bytes, VmLiveCommands.ParseSize(text));

    [Fact]
    public void Usage_errors_name_the_problem()
    {
        Assert.Equal(ExitCodes.Usage, Run("vm", "setmem", "x", "1048576").Code);
        Assert.Contains("needs a unit", Run("vm", "setmem", "x", "1048576").Err);
        Assert.Contains("not both", Run("vm", "setvcpus", "x", "2", "--live", "--config").Err);
        Assert.Contains("COUNT must be", Run("vm", "setvcpus", "x", "two").Err);
        Assert.Contains("Usage: kvmps vm setvcpus", Run("vm", "setvcpus", "--help").Out);
    }
}
