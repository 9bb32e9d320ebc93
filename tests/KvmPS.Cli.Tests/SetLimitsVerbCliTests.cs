using System.Text.Json;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Store;
using KvmPS.Management.Tests;
using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Cli.Tests;

/// <summary><c>kvmps vm setlimits</c>: CPU weight and cap and the VMM's memory overhead limit (what Set-KvmVcpu/Set-KvmMemory send with -HostName).</summary>
public sealed class SetLimitsVerbCliTests : IDisposable
{
    private readonly TempDirectory _root = new();
    private readonly VmManager _manager;

    public SetLimitsVerbCliTests()
    {
        _manager = new VmManager(VmStore.Open(_root.Path));
        _manager.New(TestDefinitions.Minimal("lim"));
    }

    public void Dispose() => _root.Dispose();

    private (int Code, string Out, string Err) Run(params string[] args) => CliRun.With(_manager, "", args);

    [Fact]
    public void Sets_each_limit_and_reports_the_changes_as_json()
    {
        var (code, output, error) = Run("vm", "setlimits", "--json", "--cpu-weight", "250", "--cpu-maximum-percent", "30", "--vmm-overhead-limit", "64M", "--", "lim");
        Assert.True(code == ExitCodes.Ok, error);
        var d = _manager.GetDefinition("lim");
        Assert.Equal((250, 30, 64L << 20), (d.CpuRelativeWeight, d.CpuMaximumPercent, d.VmmOverheadLimitBytes));
        using var json = JsonDocument.Parse(output);
        Assert.Equal(["CpuRelativeWeight", "CpuMaximumPercent", "VmmOverheadLimitBytes"],
            json.RootElement.GetProperty("changes").EnumerateArray().Select(c => c.GetProperty("property").GetString()));

        (code, _, error) = Run("vm", "setlimits", "lim", "--vmm-overhead-limit", "0");
        Assert.True(code == ExitCodes.Ok, error);
        Assert.Equal(0, _manager.GetDefinition("lim").VmmOverheadLimitBytes);
        Assert.Equal(250, _manager.GetDefinition("lim").CpuRelativeWeight);
    }

    [Theory]
    [InlineData("--cpu-weight", "0", "--cpu-weight must be a whole number from 1 to 10000 (got '0')")]
    [InlineData("--cpu-maximum-percent", "101", "--cpu-maximum-percent must be a whole number from 1 to 100 (got '101')")]
    [InlineData("--vmm-overhead-limit", "4096", "needs a unit")]
    public void Bad_values_are_usage_errors_naming_the_flag(string flag, string value, string message)
    {
        var (code, _, error) = Run("vm", "setlimits", "lim", flag, value);
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains(message, error);
        Assert.Equal(100, _manager.GetDefinition("lim").CpuRelativeWeight);
    }

    [Fact]
    public void A_limit_the_definition_refuses_is_named()
    {
        var (code, _, error) = Run("vm", "setlimits", "lim", "--vmm-overhead-limit", "8M");
        Assert.NotEqual(ExitCodes.Ok, code);
        Assert.Contains("VmmOverheadLimitBytes", error);
        Assert.Contains("8388608", error);
    }

    [Fact]
    public void Dsc_gets_tests_and_sets_the_limits()
    {
        var (code, output, error) = CliRun.With(_manager, """{"Name":"lim"}""", "dsc", "get");
        Assert.True(code == ExitCodes.Ok, error);
        var state = JsonDocument.Parse(output.Trim()).RootElement;
        Assert.Equal(100, state.GetProperty("CpuRelativeWeight").GetInt32());
        Assert.Equal(100, state.GetProperty("CpuMaximumPercent").GetInt32());
        Assert.Equal(0, state.GetProperty("VmmOverheadLimitBytes").GetInt64());

        var desired = """{"Name":"lim","CpuRelativeWeight":500,"CpuMaximumPercent":10,"VmmOverheadLimitBytes":33554432}""";
        (code, output, _) = CliRun.With(_manager, desired, "dsc", "test");
        Assert.Equal(ExitCodes.Ok, code);
        Assert.Equal("""["CpuRelativeWeight","CpuMaximumPercent","VmmOverheadLimitBytes"]""", output.Trim().Split('\n')[1].Trim());
        (code, _, error) = CliRun.With(_manager, desired, "dsc", "set");
        Assert.True(code == ExitCodes.Ok, error);
        var d = _manager.GetDefinition("lim");
        Assert.Equal((500, 10, 32L << 20), (d.CpuRelativeWeight, d.CpuMaximumPercent, d.VmmOverheadLimitBytes));
        (code, output, _) = CliRun.With(_manager, desired, "dsc", "test");
        Assert.True(JsonDocument.Parse(output.Trim().Split('\n')[0]).RootElement.GetProperty("_inDesiredState").GetBoolean());

        (code, _, error) = CliRun.With(_manager, """{"Name":"lim","CpuMaximumPercent":150}""", "dsc", "set");
        Assert.Equal(ExitCodes.ManifestError, code);
        Assert.Contains("CpuMaximumPercent", error);
        Assert.Contains("150", error);
    }

    [Fact]
    public void Needs_a_limit_and_has_help()
    {
        var (code, _, error) = Run("vm", "setlimits", "lim");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("give --cpu-weight", error);
        var (helpCode, help, _) = Run("vm", "setlimits", "--help");
        Assert.Equal(ExitCodes.Ok, helpCode);
        Assert.Contains("percent of the VM's own vCPUs", help);
    }
}
