using KvmPS.Interop;
using KvmPS.Management.Tests.TestSupport;
using KvmPS.Management.Vmm;

namespace KvmPS.Management.Tests.Vmm;

/// <summary>
/// A VMM's cgroup folder (<c>kvmps/VM</c> below the cgroups of the process that started it; docs/confinement.md
/// "cgroup limits") is removed when the VM stops or is removed, in every hierarchy, where empty; the <c>kvmps</c>
/// folder other VMs share stays. On a made-up /proc and cgroup mount.
/// </summary>
public sealed class CgroupFolderRemovalTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private string Proc => Path.Combine(_dir.Path, "proc");
    private string Mount => Path.Combine(_dir.Path, "cgroup");

    private void Own(params string[] lines)
    {
        Directory.CreateDirectory(Path.Combine(Proc, "self"));
        File.WriteAllLines(Path.Combine(Proc, "self", "cgroup"), lines);
    }

    [Fact]
    public void The_vms_folders_go_in_every_v1_hierarchy_and_the_shared_parent_and_other_vms_stay()
    {
        Own("5:memory:/user.slice", "4:cpu,cpuacct:/user.slice", "1:name=systemd:/user.slice");
        Directory.CreateDirectory(Path.Combine(Mount, "cpu")); // the co-mounted hierarchy's link by controller name
        string cpu = Path.Combine(Mount, "cpu", "user.slice", "kvmps", "web"), memory = Path.Combine(Mount, "memory", "user.slice", "kvmps", "web");
        string other = Path.Combine(Mount, "memory", "user.slice", "kvmps", "db");
        foreach (string d in new[] { cpu, memory, other }) Directory.CreateDirectory(d);

        Assert.Equal([cpu, memory], CgroupLimits.FoldersBelowOwn("kvmps/web", "self", Proc, Mount).Order());
        var removed = VmmCgroupOptions.RemoveFolders("web", Proc, Mount);

        Assert.Equal([cpu, memory], removed.Order());
        Assert.False(Directory.Exists(cpu));
        Assert.False(Directory.Exists(memory));
        Assert.True(Directory.Exists(other));
        Assert.True(Directory.Exists(Path.GetDirectoryName(cpu)));
        Assert.Empty(VmmCgroupOptions.RemoveFolders("web", Proc, Mount)); // nothing left: nothing to do, no error
    }

    [Fact]
    public void A_v2_folder_goes_and_one_that_is_not_empty_stays_without_an_error()
    {
        Own("0::/system.slice/kvmps.service");
        string v2 = Path.Combine(Mount, "system.slice", "kvmps.service", "kvmps", "web");
        Directory.CreateDirectory(v2);
        Assert.Equal([v2], VmmCgroupOptions.RemoveFolders("web", Proc, Mount));
        Assert.False(Directory.Exists(v2));

        // Busy (a VMM still in it, here a child folder): rmdir fails, the folder stays, the stop goes on.
        Directory.CreateDirectory(Path.Combine(v2, "busy"));
        Assert.Empty(VmmCgroupOptions.RemoveFolders("web", Proc, Mount));
        Assert.True(Directory.Exists(v2));
    }
}
