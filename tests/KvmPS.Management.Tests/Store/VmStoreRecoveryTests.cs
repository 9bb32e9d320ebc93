using KvmPS.Management.Definitions;
using KvmPS.Management.Store;
using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Management.Tests.Store;

/// <summary>A crash between the steps of a multi-step operation leaves no VM or a complete VM.</summary>
public sealed class VmStoreRecoveryTests : IDisposable
{
    private static readonly TimeSpan HelperTimeout = TimeSpan.FromMinutes(2);
    private readonly TempDirectory _root = new();

    public void Dispose() => _root.Dispose();

    private string Vms => Path.Combine(_root.Path, "vms");

    [Fact]
    public void Stale_creation_folder_is_discarded_on_open()
    {
        VmStore.Open(_root.Path);
        var staging = Path.Combine(Vms, ".tmp-half-0123456789abcdef0123456789abcdef");
        Directory.CreateDirectory(Path.Combine(staging, "disks"));
        File.WriteAllText(Path.Combine(staging, "vm.json"), "{ \"name\": \"ha"); // torn write

        var store = VmStore.Open(_root.Path);
        Assert.False(Directory.Exists(staging));
        Assert.Empty(store.ListNames());
        store.Create(TestDefinitions.Minimal("half"));
    }

    [Fact]
    public void Stale_definition_temp_file_is_removed_and_the_old_definition_survives()
    {
        var store = VmStore.Open(_root.Path);
        store.Create(TestDefinitions.Minimal("vm1"));
        var temp = store.DefinitionPath("vm1") + ".tmp-0123456789abcdef0123456789abcdef";
        File.WriteAllText(temp, "{ partial");

        store = VmStore.Open(_root.Path);
        Assert.False(File.Exists(temp));
        Assert.Equal(TestDefinitions.Minimal("vm1"), store.Get("vm1"));
    }

    [Fact]
    public void Half_deleted_vm_is_finished_on_open_and_is_never_listed()
    {
        var store = VmStore.Open(_root.Path);
        store.Create(TestDefinitions.Minimal("gone"));
        Directory.Move(store.VmDirectory("gone"), Path.Combine(Vms, ".delete-gone-0123456789abcdef0123456789abcdef"));
        Assert.Empty(store.ListNames()); // already invisible before recovery

        VmStore.Open(_root.Path);
        Assert.Empty(Directory.GetFileSystemEntries(Vms));
    }

    [Fact]
    public void Half_deleted_vm_that_keeps_disks_retains_them_on_recovery()
    {
        var store = VmStore.Open(_root.Path);
        store.Create(TestDefinitions.Minimal("kd"));
        File.WriteAllText(Path.Combine(store.DiskDirectory("kd"), "d.raw"), "bits");
        Directory.Move(store.VmDirectory("kd"), Path.Combine(Vms, ".delete-keep-disks-kd-0123456789abcdef0123456789abcdef"));

        VmStore.Open(_root.Path);
        Assert.Empty(Directory.GetFileSystemEntries(Vms));
        Assert.Equal("bits", File.ReadAllText(Path.Combine(_root.Path, "retained-disks", "kd-0123456789abcdef0123456789abcdef", "d.raw")));
    }

    [Theory]
    [InlineData("create:definition-written", false)]
    [InlineData("create:moved-into-place", true)]
    public void Process_killed_during_create_leaves_no_vm_or_a_complete_vm(string step, bool expectVm)
    {
        VmStore.Open(_root.Path);
        var (exitCode, _, error) = HelperProcess.Run(HelperTimeout, "crash-create", _root.Path, "crashy", step);
        Assert.True(exitCode is 137 or -1 or 9 || exitCode > 128, $"helper should have been killed, exit {exitCode}: {error}");

        var store = VmStore.Open(_root.Path); // recovery; also proves the dead process's lock was released
        Assert.Equal(expectVm, store.Exists("crashy"));
        if (expectVm)
        {
            Assert.Equal(TestDefinitions.Minimal("crashy"), store.Get("crashy"));
            Assert.True(Directory.Exists(store.DiskDirectory("crashy")));
        }
        Assert.Empty(Directory.GetDirectories(Vms, ".*"));
        // The store is fully usable afterwards.
        var next = TestDefinitions.Minimal("crashy") with { Notes = "after" };
        if (expectVm)
            store.Update(next);
        else
            store.Create(next);
        Assert.Equal("after", store.Get("crashy").Notes);
    }

    [Theory]
    [InlineData("delete:moved-aside")]
    [InlineData("delete:disks-retained")]
    public void Process_killed_during_delete_finishes_the_delete_on_open(string step)
    {
        var store = VmStore.Open(_root.Path);
        store.Create(TestDefinitions.Minimal("victim"));
        File.WriteAllText(Path.Combine(store.DiskDirectory("victim"), "d.raw"), "keep me");

        var (exitCode, _, error) = HelperProcess.Run(HelperTimeout, "crash-delete", _root.Path, "victim", step);
        Assert.True(exitCode != 0 && exitCode != 2, $"helper should have been killed, exit {exitCode}: {error}");
        Assert.False(store.Exists("victim")); // invisible as soon as it was moved aside

        VmStore.Open(_root.Path);
        Assert.Empty(Directory.GetFileSystemEntries(Vms));
        var retained = Assert.Single(Directory.GetDirectories(Path.Combine(_root.Path, "retained-disks")));
        Assert.StartsWith("victim-", Path.GetFileName(retained));
        Assert.Equal("keep me", File.ReadAllText(Path.Combine(retained, "d.raw")));
    }
}
