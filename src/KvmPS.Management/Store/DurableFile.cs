using System.Runtime.InteropServices;
using KvmPS.Interop;

namespace KvmPS.Management.Store;

/// <summary>
/// Crash-safe file replacement: write a temp file in the same directory, fsync it, rename it over the
/// target (atomic on POSIX), then fsync the directory so the rename itself survives a power loss.
/// Readers therefore see either the old or the new file, never a torn one.
/// </summary>
internal static class DurableFile
{
    /// <summary>Temp files are named <c>&lt;target&gt;.tmp-&lt;guid&gt;</c>; leftovers from a crash are removed on store open.</summary>
    public const string TempMarker = ".tmp-";

    public static void WriteAtomically(string path, ReadOnlySpan<byte> contents)
    {
        var directory = Path.GetDirectoryName(path)!;
        var temp = path + TempMarker + Guid.NewGuid().ToString("N");
        try
        {
            // 0600 from birth: definitions, vmm.json and vmm.pid are the store owner's alone (O_EXCL never follows a link).
            using (var stream = new FileStream(NoFollowFile.CreateNew(temp, StoreConfinement.FileMode), FileAccess.Write))
            {
                stream.Write(contents);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, path, overwrite: true);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
        FsyncDirectory(directory);
    }

    public static void FsyncDirectory(string directory)
    {
        var fd = Libc.Open(directory, Libc.O_RDONLY | Libc.O_CLOEXEC, 0);
        if (fd < 0)
            throw new VmStoreException($"Cannot open directory '{directory}' to sync it: {Libc.Describe(Marshal.GetLastPInvokeError())}");
        try
        {
            if (Libc.Fsync(fd) != 0)
                throw new VmStoreException($"Cannot sync directory '{directory}': {Libc.Describe(Marshal.GetLastPInvokeError())}");
        }
        finally
        {
            Libc.Close(fd);
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
