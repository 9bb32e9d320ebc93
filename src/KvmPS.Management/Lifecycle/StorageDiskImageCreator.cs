using KvmPS.Management.Definitions;
using KvmPS.Management.Store;
using KvmPS.Storage;
using KvmPS.Storage.Qcow2;

namespace KvmPS.Management.Lifecycle;

/// <summary>
/// <see cref="IDiskImageCreator"/> over KvmPS.Storage: the one place the cmdlets, the CLI and the reconciler create images.
/// </summary>
public sealed class StorageDiskImageCreator : IDiskImageCreator
{
    public void CreateImage(DiskImageRequest request, IProgress<OperationProgress>? progress)
    {
        ArgumentNullException.ThrowIfNull(request);
        var size = request.Disk.SizeBytes ?? throw new ArgumentException($"Disk '{request.Path}' has no SizeBytes", nameof(request));
        Create(request.Path, request.Disk.Format, size, request.BackingImagePath);
        progress?.Report(new OperationProgress($"Creating disk image '{request.Path}'", "Created", 100) { VmName = request.VmName, Completed = true });
    }

    /// <summary>Creates a raw or qcow2 image; never overwrites an existing file. <paramref name="sizeBytes"/> 0 with a backing file takes the backing file's size.</summary>
    public static void Create(string path, DiskFormat format, long sizeBytes, string? backingPath)
    {
        if (File.Exists(path))
            throw new IOException($"'{path}' already exists; KvmPS does not overwrite disk images");
        var directory = Path.GetDirectoryName(Path.GetFullPath(path));
        if (!string.IsNullOrEmpty(directory) && !Directory.Exists(directory))
            StoreConfinement.CreateDirectory(directory);
        if (format == DiskFormat.Raw)
        {
            if (backingPath is not null)
                throw new ArgumentException("A backing image needs the qcow2 format", nameof(backingPath));
            DiskImageFactory.CreateRaw(path, checked((ulong)sizeBytes));
        }
        else
            DiskImageFactory.CreateQcow2(path, checked((ulong)sizeBytes), new Qcow2CreateOptions { BackingFile = backingPath });
        // A guest's whole disk is nobody else's to read: 0600 as every file of the store (KvmPS.Storage creates 0666 & umask).
        StoreConfinement.RestrictFile(path);
    }
}
