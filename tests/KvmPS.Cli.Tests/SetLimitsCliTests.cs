using System.Text.Json;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Store;
using KvmPS.Management.Tests;
using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Cli.Tests;

/// <summary>
/// <c>kvmps vm setvcpus --maximum</c> and <c>vm setmem --minimum/--maximum</c> on a VM that is off (what Set-KvmVcpu
/// -Maximum and Set-KvmMemory -MinimumBytes/-MaximumBytes send with -HostName): COUNT and SIZE may then be left out.
/// </summary>
public sealed class SetLimitsCliTests : IDisposable
{
    private readonly TempDirectory _root = new();
    private readonly VmManager _manager;

    public SetLimitsCliTests()
    {
        _manager = new VmManager(VmStore.Open(_root.Path));
        _manager.New(TestDefinitions.Minimal("lim"));
    }

    public void Dispose() => _root.Dispose();

    private (int Code, string Out, string Err) Run(params string[] args) => CliRun.With(_manager, "", args);

    [Fact]
    public void Setvcpus_maximum_alone_keeps_the_count()
    {
        var count = _manager.GetDefinition("lim").Vcpus.Count;
        var (code, output, error) = Run("vm", "setvcpus", "--json", "--maximum", "4", "--", "lim");
        Assert.True(code == ExitCodes.Ok, error);
        Assert.Equal(4, _manager.GetDefinition("lim").Vcpus.Maximum);
        Assert.Equal(count, _manager.GetDefinition("lim").Vcpus.Count);
        using var json = JsonDocument.Parse(output);
        Assert.Contains(json.RootElement.GetProperty("changes").EnumerateArray(), c => c.GetProperty("property").GetString()!.Contains("Vcpu"));

        (code, _, error) = Run("vm", "setvcpus", "lim", "3", "--maximum", "3");
        Assert.True(code == ExitCodes.Ok, error);
        Assert.Equal(new Management.Definitions.VcpuSettings(3, 3), _manager.GetDefinition("lim").Vcpus);
    }

    [Fact]
    public void Setmem_takes_minimum_and_maximum_and_bytes_said_as_such()
    {
        var (code, _, error) = Run("vm", "setmem", "lim", "64M", "--minimum", "32M", "--maximum", "134217728B");
        Assert.True(code == ExitCodes.Ok, error);
        var memory = _manager.GetDefinition("lim").Memory;
        Assert.Equal(64L << 20, memory.StartupBytes);
        Assert.Equal(32L << 20, memory.MinimumBytes);
        Assert.Equal(128L << 20, memory.MaximumBytes);

        (code, _, error) = Run("vm", "setmem", "lim", "--maximum", "256M");
        Assert.True(code == ExitCodes.Ok, error);
        Assert.Equal(256L << 20, _manager.GetDefinition("lim").Memory.MaximumBytes);
        Assert.Equal(64L << 20, _manager.GetDefinition("lim").Memory.StartupBytes);
    }

    [Fact]
    public void Nothing_to_set_is_a_usage_error()
    {
        var (code, _, error) = Run("vm", "setvcpus", "lim");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("give COUNT, --maximum or both", error);
        (code, _, error) = Run("vm", "setmem", "lim");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("give SIZE, --minimum, --maximum", error);
        Assert.Contains("--maximum must be", Run("vm", "setvcpus", "lim", "--maximum", "many").Err);
    }
}
