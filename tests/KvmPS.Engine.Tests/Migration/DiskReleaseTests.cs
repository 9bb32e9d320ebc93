using KvmPS.Devices.Virtio.Block;
using KvmPS.Engine.Tests.Support;
using KvmPS.Storage;
using Xunit;

namespace KvmPS.Engine.Tests.Migration;

/// <summary>
/// A disk released for a migration over tcp (docs/migration.md, "Without descriptor passing"): the image goes and its
/// locks are dropped, so another process can open it, but the device keeps the files, on which the image opens again
/// (locked) when the destination refuses, without its path: here the path names nothing any more by then.
/// </summary>
public class DiskReleaseTests
{
    private static bool InUse(string path)
    {
        try { using var image = DiskImageFactory.Open(path, DiskImageFormat.Raw); return false; }
        catch (ImageInUseException) { return true; }
    }

    [Fact]
    public void AReleasedDiskUnlocksItsImageKeepsItsFileAndTakesItBackLocked()
    {
        using var dir = new TempDir();
        string path = dir.File("data.raw");
        DiskImageFactory.CreateRaw(path, 1 << 20);
        var written = new byte[512];
        written.AsSpan().Fill(0xa5);
        using var disk = new VirtioBlock(DiskImageFactory.Open(path, DiskImageFormat.Raw));
        disk.Backend.Write(4096, written);
        Assert.True(InUse(path));

        disk.ReleaseBackend();
        Assert.True(disk.AwaitsBackend);
        Assert.Equal(1, disk.ReleasedFiles?.Count);
        Assert.False(InUse(path)); // the destination could lock it now

        // The path goes away: what the source takes back can only be the file it kept.
        File.Move(path, dir.File("moved.raw"));
        var kept = disk.ReleasedFiles!.Select(f => KvmPS.Interop.PassedDescriptors.Duplicate(f)).ToList();
        disk.AdoptBackend(DiskImageFactory.OpenPassed(path, DiskImageFormat.Raw, readOnly: false, kept));
        Assert.False(disk.AwaitsBackend);
        Assert.Null(disk.ReleasedFiles);
        Assert.True(InUse(dir.File("moved.raw")), "the image is locked again");
        var read = new byte[512];
        disk.Backend.Read(4096, read);
        Assert.Equal(written, read);
    }

    [Fact]
    public void ClosingTheReleasedFilesLeavesTheDiskWithoutAny()
    {
        using var dir = new TempDir();
        string path = dir.File("data.raw");
        DiskImageFactory.CreateRaw(path, 1 << 20);
        using var disk = new VirtioBlock(DiskImageFactory.Open(path, DiskImageFormat.Raw));
        disk.ReleaseBackend();
        var file = disk.ReleasedFiles![0];
        disk.CloseReleasedFiles();
        Assert.True(disk.AwaitsBackend);
        Assert.Null(disk.ReleasedFiles);
        Assert.True(file.IsClosed);
    }
}
