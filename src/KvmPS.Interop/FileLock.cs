using System.Runtime.InteropServices;

namespace KvmPS.Interop;

/// <summary>
/// An exclusive flock(2) on a lock file, held until disposed (and released by the kernel if the process dies).
/// The file is opened with open(2), not FileStream: .NET emulates FileShare with flock itself, which would collide.
/// </summary>
public sealed class FileLock : IDisposable
{
    private readonly LockFileHandle _file;
    public string Path { get; }

    private FileLock(string path, LockFileHandle file) { Path = path; _file = file; }

    /// <summary>Takes the lock without waiting; null when another open file description holds it.</summary>
    public static FileLock? TryAcquire(string path)
    {
        // O_NOFOLLOW: a link planted as the lock file must not make us create or lock the file it points to.
        int fd = Libc.Open(path, Libc.O_RDWR | Libc.O_CREAT | Libc.O_NOFOLLOW | Libc.O_CLOEXEC, 0x180 /* 0600 */);
        if (fd < 0)
        {
            int openErrno = Marshal.GetLastPInvokeError();
            if (openErrno == Libc.ELOOP) throw new SymlinkRefusedException(path);
            throw new NativeCallException("open", openErrno, path);
        }
        var file = new LockFileHandle(fd);
        if (Libc.Flock(fd, Libc.LOCK_EX | Libc.LOCK_NB) == 0) return new FileLock(path, file);
        int errno = Marshal.GetLastPInvokeError();
        file.Dispose();
        if (errno == Libc.EAGAIN) return null;
        throw new NativeCallException("flock", errno, path);
    }

    /// <summary>True when some process holds the lock on <paramref name="path"/> (probes with a non-blocking shared attempt).</summary>
    public static bool IsHeld(string path)
    {
        if (!File.Exists(path)) return false;
        var probe = TryAcquire(path);
        probe?.Dispose();
        return probe is null;
    }

    public void Dispose() => _file.Dispose();

    private sealed class LockFileHandle : FileDescriptorHandle
    {
        public LockFileHandle(int fd) : base(fd) { }
    }
}
