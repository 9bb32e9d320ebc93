using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace KvmPS.Interop;

/// <summary>An exclusive flock(2) on a lock file, held until disposed (and released by the kernel if the process dies).</summary>
public sealed class FileLock : IDisposable
{
    private readonly SafeFileHandle _file;
    public string Path { get; }

    private FileLock(string path, SafeFileHandle file) { Path = path; _file = file; }

    /// <summary>Takes the lock without waiting; null when another process holds it.</summary>
    public static FileLock? TryAcquire(string path)
    {
        var file = File.OpenHandle(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.ReadWrite);
        if (Libc.Flock((int)file.DangerousGetHandle(), Libc.LOCK_EX | Libc.LOCK_NB) == 0) return new FileLock(path, file);
        int errno = Marshal.GetLastPInvokeError();
        file.Dispose();
        if (errno == Libc.EAGAIN) return null;
        throw new NativeCallException("flock", errno, path);
    }

    public void Dispose() => _file.Dispose();
}
