using KvmPS.Management.Definitions;
using KvmPS.Management.DesiredState;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Tests;
using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Cli.Tests;

/// <summary>kvmps export: stdout and -o FILE, then kvmps test on the result (real kvmps-vmm).</summary>
[Collection(VmmCollection.Name)]
public sealed class ExportCliTests : IDisposable
{
    private readonly LifecycleSandbox _sandbox;
    private readonly TempDirectory _dir = new();

    public ExportCliTests(VmmFixture fixture) => _sandbox = new LifecycleSandbox(fixture);

    public void Dispose()
    {
        _sandbox.Dispose();
        _dir.Dispose();
    }

    private (int Code, string Out, string Err) Run(params string[] args) => CliRun.With(_sandbox.Manager, "", args);

    [Fact]
    public void Export_to_a_file_then_test_exits_0_and_drift_exits_1()
    {
        var manager = _sandbox.Manager;
        manager.New(TestDefinitions.Minimal("cx-run") with { Memory = MemorySettings.Fixed(64L << 20), Notes = "it's \"here\"\nsecond line" });
        manager.New(TestDefinitions.Minimal("cx-off") with { Vcpus = new VcpuSettings(2, 4) });
        manager.Start("cx-run");

        var file = Path.Combine(_dir.Path, "exported host.psd1");
        var (code, output, err) = Run("export", "-o", file);
        Assert.True(code == ExitCodes.Ok, err);
        Assert.Equal("", output);
        Assert.Contains("wrote 2 VM(s)", err);

        (code, output, _) = Run("test", file);
        Assert.Equal(ExitCodes.Ok, code);
        Assert.StartsWith("True", output);

        manager.Stop("cx-run", force: true);
        (code, _, _) = Run("test", file);
        Assert.Equal(ExitCodes.Drift, code);

        // Overwriting needs --force; the file is left as it was.
        var before = File.ReadAllText(file);
        (code, _, err) = Run("export", "cx-off", "--output", file);
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("--force", err);
        Assert.Equal(before, File.ReadAllText(file));
        (code, _, _) = Run("export", "cx-off", "--output", file, "--force");
        Assert.Equal(ExitCodes.Ok, code);
        Assert.Equal(new[] { "cx-off" }, DesiredStateReader.ReadFiles(new[] { file }).Vms.Select(v => v.Name));
    }

    [Fact]
    public void Export_to_stdout_selects_by_name_and_wildcard()
    {
        _sandbox.Manager.New(TestDefinitions.Minimal("sx-a"));
        _sandbox.Manager.New(TestDefinitions.Minimal("sx-b"));
        _sandbox.Manager.New(TestDefinitions.Minimal("zz"));

        var (code, output, _) = Run("export", "sx-*");
        Assert.Equal(ExitCodes.Ok, code);
        var desired = DesiredStateReader.Parse(output);
        Assert.Equal(new[] { "sx-a", "sx-b" }, desired.Vms.Select(v => v.Name).Order());
        Assert.All(desired.Vms, v => Assert.Equal(DesiredPowerState.Off, v.State));

        (code, output, _) = Run("export");
        Assert.Equal(3, DesiredStateReader.Parse(output).Vms.Count);
    }

    [Fact]
    public void Missing_names_and_bad_options_fail_without_writing()
    {
        _sandbox.Manager.New(TestDefinitions.Minimal("mx"));
        var file = Path.Combine(_dir.Path, "m.psd1");

        var (code, output, err) = Run("export", "mx", "nope", "-o", file);
        Assert.Equal(ExitCodes.VmNotFound, code);
        Assert.Contains("'nope'", err);
        Assert.Equal("", output);
        Assert.False(File.Exists(file));

        Assert.Equal(ExitCodes.Usage, Run("export", "-o").Code);
        Assert.Equal(ExitCodes.Usage, Run("export", "--bogus").Code);
        (code, output, _) = Run("export", "--help");
        Assert.Equal(ExitCodes.Ok, code);
        Assert.Contains("kvmps export [NAME...]", output);
        Assert.Contains("export [NAME...]", Run("--help").Out);
    }
}
