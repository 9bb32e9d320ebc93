using KvmPS.Management.Definitions;
using KvmPS.Management.DesiredState;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Management.Tests.DesiredState;

/// <summary>Export of real VMs (kvmps-vmm on the built-in guest): Test is clean, and apply re-creates them.</summary>
[Collection(VmmCollection.Name)]
public sealed class ManifestExporterVmmTests : IDisposable
{
    private readonly LifecycleSandbox _sandbox;
    private readonly TempDirectory _dir = new();

    public ManifestExporterVmmTests(VmmFixture fixture) => _sandbox = new LifecycleSandbox(fixture);

    public void Dispose()
    {
        _sandbox.Dispose();
        _dir.Dispose();
    }

    [Fact]
    public void Exported_host_tests_clean_and_apply_recreates_it()
    {
        var manager = _sandbox.Manager;
        var running = TestDefinitions.Minimal("ex-run") with { Memory = MemorySettings.Fixed(64L << 20), Vcpus = new VcpuSettings(2, 4), Notes = "it's\nrunning" };
        var paused = TestDefinitions.Minimal("ex-pause") with { Memory = new MemorySettings(64L << 20, 32L << 20, 128L << 20), BalloonEnabled = true };
        var off = TestDefinitions.Minimal("other-off") with { Autostart = true, Notes = "C:\\path with spaces\\ $x" };
        manager.New(running);
        manager.New(paused);
        manager.New(off);
        manager.Start("ex-run");
        manager.Start("ex-pause");
        manager.Suspend("ex-pause");

        var export = ManifestExporter.Export(manager);
        Assert.Equal(new[] { "ex-pause", "ex-run", "other-off" }, export.VmNames.Order());
        Assert.Empty(export.NotFound);
        Assert.Empty(export.Warnings);
        var path = Path.Combine(_dir.Path, "exported host.psd1");
        ManifestExporter.WriteFile(path, export.Text, overwrite: false);

        var desired = DesiredStateReader.ReadFiles(new[] { path });
        var reconciler = new Reconciler(manager);
        Assert.Empty(reconciler.Test(desired));
        Assert.True(reconciler.Plan(desired).IsEmpty);

        // Drift after the export shows up, and apply brings the host back.
        manager.Stop("ex-run", force: true);
        Assert.Equal(new[] { "State" }, reconciler.Test(desired).Select(d => d.Property));

        // Gone entirely: apply re-creates all three, with their definitions and states.
        foreach (var vm in manager.List())
            manager.Remove(vm.Name, force: true);
        var result = reconciler.Set(desired);
        Assert.True(result.Succeeded, result.Failure?.Message);
        Assert.Empty(reconciler.Test(desired));
        Assert.Equal(running, manager.Get("ex-run").Definition);
        Assert.Equal(paused, manager.Get("ex-pause").Definition);
        Assert.Equal(off, manager.Get("other-off").Definition);
        Assert.Equal(VmState.Running, manager.Get("ex-run").State);
        Assert.Equal(VmState.Paused, manager.Get("ex-pause").State);
        Assert.Equal(VmState.Off, manager.Get("other-off").State);
    }

    [Fact]
    public void Names_and_wildcards_select_and_missing_names_are_reported()
    {
        var manager = _sandbox.Manager;
        manager.New(TestDefinitions.Minimal("sel-a"));
        manager.New(TestDefinitions.Minimal("sel-b"));
        manager.New(TestDefinitions.Minimal("other"));

        var export = ManifestExporter.Export(manager, new[] { "sel-*", "nope" });
        Assert.Equal(new[] { "sel-a", "sel-b" }, export.VmNames.Order());
        Assert.Equal(new[] { "nope" }, export.NotFound);
        Assert.Equal(new[] { "sel-a", "sel-b" }, DesiredStateReader.Parse(export.Text).Vms.Select(v => v.Name).Order());

        var none = ManifestExporter.Export(manager, Array.Empty<string>());
        Assert.Empty(none.VmNames);
        Assert.Empty(DesiredStateReader.Parse(none.Text).Vms);

        Assert.Equal(3, ManifestExporter.Export(manager, null).VmNames.Count);
    }
}
