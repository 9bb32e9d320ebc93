using KvmPS.Storage.Qcow2;
using Microsoft.Win32.SafeHandles;

namespace KvmPS.Storage.Tests;

/// <summary>
/// A migration over tcp releases a disk's locks but keeps its files (docs/migration.md): <see cref="DiskImageFactory.ReleaseLocks"/>
/// lets another process lock and write the chain while the files stay open, and <see cref="DiskImageFactory.OpenPassed"/>
/// on those files locks the chain again once the other let go, without opening a path.
/// </summary>
public class ImageLockReleaseTests
{
    [Fact]
    public void ReleasedLocksLetAnotherOpenerInAndTheKeptFilesLockTheChainAgain()
    {
        using var dir = new TempDirectory();
        string basePath = dir.File("base.raw"), overlay = dir.File("overlay.qcow2");
        DiskImageFactory.CreateRaw(basePath, 1 << 20);
        DiskImageFactory.CreateQcow2(overlay, 0, new Qcow2CreateOptions { BackingFile = "base.raw", BackingFormat = DiskImageFormat.Raw });
        var data = new byte[512];
        data.AsSpan().Fill(0x5a);

        var kept = new List<(string Path, SafeFileHandle File)>();
        using (var image = DiskImageFactory.Open(overlay, DiskImageFormat.Qcow2))
            foreach (var (path, file) in DiskImageFactory.OpenFiles(image)) kept.Add((path, KvmPS.Interop.PassedDescriptors.Duplicate(file)));
        try
        {
            // Closing the image objects alone leaves the locks with the open file descriptions the copies hold.
            Assert.Throws<ImageInUseException>(() => DiskImageFactory.Open(overlay, DiskImageFormat.Qcow2).Dispose());
            foreach (var (path, file) in kept) DiskImageFactory.ReleaseLocks(path, file);

            // Another opener (the destination) locks and writes the chain now; locking the kept files again is refused meanwhile.
            using (var other = DiskImageFactory.Open(overlay, DiskImageFormat.Qcow2))
            {
                other.Write(4096, data);
                other.Flush();
                Assert.Throws<ImageInUseException>(() => DiskImageFactory.OpenPassed(overlay, DiskImageFormat.Qcow2, false, Copies(kept)).Dispose());
            }

            // The refused attempt left no lock on the kept files (it had published its own before it saw the conflict):
            // a third opener gets the chain.
            DiskImageFactory.Open(overlay, DiskImageFormat.Qcow2).Dispose();

            // It let go: the kept files give the chain back, locked, reading what the other wrote (nothing cached from before).
            using var again = DiskImageFactory.OpenPassed(overlay, DiskImageFormat.Qcow2, false, Copies(kept));
            var read = new byte[512];
            again.Read(4096, read);
            Assert.Equal(data, read);
            Assert.Throws<ImageInUseException>(() => DiskImageFactory.Open(overlay, DiskImageFormat.Qcow2).Dispose());
            Assert.Throws<ImageInUseException>(() => DiskImageFactory.Open(basePath, DiskImageFormat.Raw).Dispose());
        }
        finally
        {
            foreach (var (_, file) in kept) file.Dispose();
        }
        DiskImageFactory.Open(overlay, DiskImageFormat.Qcow2).Dispose(); // every copy closed: free
    }

    private static List<SafeFileHandle> Copies(List<(string Path, SafeFileHandle File)> kept) =>
        kept.Select(k => KvmPS.Interop.PassedDescriptors.Duplicate(k.File)).ToList();
}
