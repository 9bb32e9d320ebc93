using KvmPS.Management.DesiredState;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Pools;
using KvmPS.Management.Store;
using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Management.Tests.Pools;

/// <summary>Manifests with StoragePools: read, planned before the VMs, drift (folder missing) repaired. No VMM: VMs are only defined.</summary>
public sealed class StoragePoolDesiredStateTests : IDisposable
{
    private readonly TempDirectory _temp = new();
    private readonly string _root;
    private readonly string _poolFolder;

    public StoragePoolDesiredStateTests()
    {
        _root = Path.Combine(_temp.Path, "store");
        _poolFolder = Path.Combine(_temp.Path, "lab-images");
    }

    public void Dispose() => _temp.Dispose();

    private Reconciler Open() =>
        new(new VmManager(VmStore.Open(_root, allowedPaths: AllowedPaths.StoreOnly(_root)), diskImageCreator: new StorageDiskImageCreator()));

    private string Manifest(string ensure = "Present") => $$"""
        @{
          StoragePools = @(
            @{ Name = 'lab'; Path = '{{_poolFolder}}'; Autostart = $true; Ensure = '{{ensure}}' }
          )
          VirtualMachines = @(
            @{ Name = 'web1'; MemoryStartupBytes = 64MB; Disks = @( @{ Pool = 'lab'; Volume = 'web1.qcow2'; SizeBytes = 16MB }, @{ Volume = 'scratch.raw'; SizeBytes = 1MB } ) }
          )
        }
        """;

    [Fact]
    public void PoolsAreAppliedBeforeVmsAndASecondApplyDoesNothing()
    {
        var desired = DesiredStateReader.Parse(Manifest());
        var pool = Assert.Single(desired.StoragePools);
        Assert.Equal(_poolFolder, pool.Path);
        Assert.True(pool.Autostart);

        var reconciler = Open();
        var plan = reconciler.Plan(desired);
        Assert.Equal([ReconcileActionKind.CreateStoragePool, ReconcileActionKind.Create], plan.Actions.Select(a => a.Kind));
        Assert.Contains(plan.Drifts, d => d.VmName == "StoragePools.lab" && d.Property == "Ensure");

        var result = reconciler.Set(desired);
        Assert.True(result.Succeeded, result.Failure?.Message);
        Assert.True(File.Exists(Path.Combine(_poolFolder, "web1.qcow2")));
        Assert.True(File.Exists(Path.Combine(_root, "pools", "default", "scratch.raw")));
        Assert.Equal("pool://lab/web1.qcow2", reconciler.Manager.Store.Get("web1").Disks[0].Path);

        // A new process (new store and reconciler) finds nothing to do.
        var again = Open();
        Assert.True(again.Plan(desired).IsEmpty);
        Assert.True(again.Get(desired).InDesiredState);
    }

    [Fact]
    public void AMissingPoolFolderIsDriftAndIsRepaired()
    {
        var desired = DesiredStateReader.Parse(Manifest());
        Open().Set(desired);
        Directory.Delete(_poolFolder, recursive: true);

        var reconciler = Open();
        var drift = Assert.Single(reconciler.Test(desired));
        Assert.Equal(("StoragePools.lab", "Folder"), (drift.VmName, drift.Property));
        Assert.False(reconciler.Get(desired).InDesiredState);

        var repair = reconciler.Set(desired);
        Assert.True(repair.Succeeded, repair.Failure?.Message);
        Assert.Equal(ReconcileActionKind.CreateStoragePoolFolder, Assert.Single(repair.Results).Action.Kind);
        Assert.True(Directory.Exists(_poolFolder));
        Assert.Empty(Open().Test(desired));
    }

    [Fact]
    public void AnAbsentPoolIsRemovedAfterTheVmsThatUsedIt()
    {
        Open().Set(DesiredStateReader.Parse(Manifest()));
        var absent = DesiredStateReader.Parse($$"""
            @{
              StoragePools = @( @{ Name = 'lab'; Ensure = 'Absent' } )
              VirtualMachines = @( @{ Name = 'web1'; Ensure = 'Absent' } )
            }
            """);

        var plan = Open().Plan(absent);
        Assert.Equal([ReconcileActionKind.Remove, ReconcileActionKind.RemoveStoragePool], plan.Actions.Select(a => a.Kind));
        var result = Open().Set(absent);
        Assert.True(result.Succeeded, result.Failure?.Message);
        Assert.Null(new StoragePoolManager(Open().Manager.Store).TryGet("lab"));
    }

    [Theory]
    [InlineData("@{ StoragePools = @( @{ Name = 'p'; Pth = '/x' } ) }", "unknown key 'Pth'")]
    [InlineData("@{ StoragePools = @( @{ Name = 'p' } ) }", "Path")]
    [InlineData("@{ StoragePools = @( @{ Name = 'a/b'; Path = '/x' } ) }", "not a valid pool name")]
    [InlineData("@{ StoragePools = @( @{ Name = 'p'; Path = '/x'; Autostart = 'yes' } ) }", "$true or $false")]
    [InlineData("@{ StoragePools = @( @{ Name = 'p'; Path = '/x' }, @{ Name = 'p'; Path = '/y' } ) }", "declared twice")]
    [InlineData("@{ StoragePools = @( @{ Name = 'default'; Path = '/x' } ) }", "built-in")]
    public void BadPoolEntriesAreRefusedWithTheirPosition(string text, string expected)
    {
        var error = Assert.Throws<DesiredStateException>(() => DesiredStateReader.Parse(text));
        Assert.Contains(expected, error.Message);
        Assert.Contains("StoragePools[", error.Property ?? "");
    }

    [Fact]
    public void AVmOnAPoolNobodyDeclaresIsRefusedInThePlan()
    {
        var desired = DesiredStateReader.Parse("@{ VirtualMachines = @( @{ Name = 'web1'; MemoryStartupBytes = 64MB; Disks = @( @{ Pool = 'nope'; Volume = 'a.raw' } ) } ) }");

        var error = Assert.Throws<DesiredStateException>(() => Open().Plan(desired));
        Assert.Contains("'nope'", error.Message);
    }
}

public sealed class StoragePoolExportTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void ExportStatesThePoolsOfTheVmsAndTheirDisksByPoolAndVolume()
    {
        var root = Path.Combine(_temp.Path, "store");
        var manager = new VmManager(VmStore.Open(root, allowedPaths: AllowedPaths.StoreOnly(root)), diskImageCreator: new StorageDiskImageCreator());
        var folder = Path.Combine(_temp.Path, "lab");
        var desired = DesiredStateReader.Parse($$"""
            @{
              StoragePools = @( @{ Name = 'lab'; Path = '{{folder}}'; Autostart = $true } )
              VirtualMachines = @( @{ Name = 'web1'; MemoryStartupBytes = 64MB; Disks = @( @{ Pool = 'lab'; Volume = 'web1.qcow2'; SizeBytes = 1MB } ) } )
            }
            """);
        Assert.True(new Reconciler(manager).Set(desired).Succeeded);

        var export = ManifestExporter.Export(manager);

        Assert.Contains("StoragePools = @(", export.Text);
        Assert.Contains("Pool = 'lab'; Volume = 'web1.qcow2'", export.Text);
        Assert.DoesNotContain("pool://", export.Text);
        var again = DesiredStateReader.Parse(export.Text);
        Assert.Equal(folder, Assert.Single(again.StoragePools).Path);
        Assert.Empty(new Reconciler(manager).Test(again));
    }
}

public sealed class StoragePoolExampleTests
{
    [Fact]
    public void TheExampleManifestReads()
    {
        var root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "KvmPS.sln")))
            root = Path.GetDirectoryName(root)!;

        var desired = DesiredStateReader.ReadFiles([Path.Combine(root, "examples", "pools-host.psd1")]);

        Assert.Equal("lab", Assert.Single(desired.StoragePools).Name);
        Assert.Equal(["lab", "default"], desired.Vms.Single().Definition!.Disks.Select(d => d.Pool));
    }
}
