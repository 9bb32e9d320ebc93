using KvmPS.Engine.Tests.Support;
using KvmPS.Sandbox;
using Xunit;

namespace KvmPS.Engine.Tests.Sandbox;

/// <summary>The move into the cgroup folders on a thread of its own (<see cref="CgroupJoin"/>), on plain files.</summary>
public class CgroupJoinTests
{
    [Fact]
    public void ThePidIsWrittenToEachFoldersProcsFileAndTheThreadIsGoneAfterWait()
    {
        using var dir = new TempDir();
        string[] folders = [Directory.CreateDirectory(dir.File("cpu")).FullName, Directory.CreateDirectory(dir.File("memory")).FullName];
        foreach (string folder in folders) File.WriteAllText(Path.Combine(folder, "cgroup.procs"), "");
        var join = new CgroupJoin(folders);
        join.Start();
        join.Wait();
        foreach (string folder in folders) Assert.Equal(Environment.ProcessId.ToString(), File.ReadAllText(Path.Combine(folder, "cgroup.procs")));
        Assert.DoesNotContain(Directory.GetDirectories("/proc/self/task"), t => File.ReadAllText(Path.Combine(t, "comm")).Trim() == "cgroup-join");
    }

    [Fact]
    public void AFolderThatCannotBeJoinedFailsTheWaitNamingItsFile()
    {
        using var dir = new TempDir();
        string missing = dir.File("gone");
        var join = new CgroupJoin([missing]);
        join.Start();
        var e = Assert.Throws<SandboxException>(join.Wait);
        Assert.Contains(Path.Combine(missing, "cgroup.procs"), e.Message);
        Assert.Contains("No such file", e.Message);
    }

    [Fact]
    public void FilesOpenedForAMoveThatNeverStartedAreClosed()
    {
        using var dir = new TempDir();
        string[] folders = [Directory.CreateDirectory(dir.File("cpu")).FullName, Directory.CreateDirectory(dir.File("memory")).FullName];
        foreach (string folder in folders) File.WriteAllText(Path.Combine(folder, "cgroup.procs"), "");
        int OpenOnThem() => new DirectoryInfo("/proc/self/fd").GetFileSystemInfos()
            .Count(fd => fd.LinkTarget is { } target && target.StartsWith(dir.Path, StringComparison.Ordinal));
        var join = new CgroupJoin(folders);
        join.Open();
        Assert.Equal(2, OpenOnThem());
        join.CloseUnstarted();
        Assert.Equal(0, OpenOnThem());
        Assert.False(join.Started);
    }

    [Fact]
    public void WaitWithoutStartReturns() => new CgroupJoin(["/nonexistent"]).Wait();
}
