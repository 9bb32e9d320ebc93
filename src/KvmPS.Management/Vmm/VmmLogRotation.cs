using KvmPS.Interop;

namespace KvmPS.Management.Vmm;

/// <summary>
/// Bounds vmm.log (the VMM's stdout and stderr, appended across starts) as kvmps-vmm bounds serial.log: when it has
/// reached the VM's <c>LogMaxBytes</c>, <c>vmm.log.(n-1)</c> becomes <c>vmm.log.n</c> … <c>vmm.log</c> becomes
/// <c>vmm.log.1</c>, the oldest beyond <c>LogFileCount</c> is deleted and the next start begins a new file. Renames
/// and deletes act on names, never through a link.
/// </summary>
public static class VmmLogRotation
{
    /// <summary>Rotates <paramref name="path"/> if it holds <paramref name="maxBytes"/> or more (0: never). Returns whether it did.</summary>
    public static bool RotateIfFull(string path, long maxBytes, int keptFiles)
    {
        if (maxBytes == 0 || FileOwnership.Of(path) is not { IsRegularFile: true } || new FileInfo(path).Length < maxBytes)
            return false;
        string Name(int index) => index == 0 ? path : $"{path}.{index}";
        if (keptFiles == 0)
        {
            File.Delete(path);
            return true;
        }
        File.Delete(Name(keptFiles));
        for (int i = keptFiles - 1; i >= 0; i--)
            if (FileOwnership.Of(Name(i)) is not null)
                File.Move(Name(i), Name(i + 1), overwrite: true);
        return true;
    }
}
