using System.Diagnostics;
using System.Runtime.InteropServices;
using KvmPS.Interop;

namespace KvmPS.Management.Store;

/// <summary>
/// Exclusive <c>flock(2)</c> on the store's lock file. Every acquisition opens its own file description, so
/// the lock serializes threads of one process as well as separate processes; the kernel drops it if the
/// holder dies, so a crash never leaves the store locked.
/// </summary>
internal sealed class StoreLock : IDisposable
{
    private int _fd;

    private StoreLock(int fd) => _fd = fd;

    public static StoreLock Acquire(string lockPath, int timeoutMs)
    {
        var fd = OpenLockFile(lockPath);
        var clock = Stopwatch.StartNew();
        var sleepMs = 1;
        while (true)
        {
            if (Libc.Flock(fd, Libc.LOCK_EX | Libc.LOCK_NB) == 0)
                return new StoreLock(fd);
            var errno = Marshal.GetLastPInvokeError();
            if (errno == Libc.EINTR)
                continue;
            if (errno != Libc.EWOULDBLOCK)
            {
                Libc.Close(fd);
                throw new VmStoreException($"Cannot lock '{lockPath}': {Libc.Describe(errno)}");
            }
            if (clock.ElapsedMilliseconds >= timeoutMs)
            {
                Libc.Close(fd);
                throw new StoreLockTimeoutException(lockPath, timeoutMs);
            }
            // Poll rather than block so the wait has a timeout; back off to keep contention cheap.
            Thread.Sleep(sleepMs);
            sleepMs = Math.Min(sleepMs * 2, 25);
        }
    }

    private static int OpenLockFile(string lockPath)
    {
        while (true)
        {
            // 0600 and never through a link planted in its place.
            var fd = Libc.Open(lockPath, Libc.O_RDWR | Libc.O_CREAT | Libc.O_NOFOLLOW | Libc.O_CLOEXEC, 0b110_000_000 /* 0600 */);
            if (fd >= 0)
                return fd;
            var errno = Marshal.GetLastPInvokeError();
            if (errno == Libc.ELOOP)
                throw new VmStoreException($"The store lock file '{lockPath}' is a symbolic link; KvmPS does not follow links inside its store. Remove it ('rm {lockPath}') and retry.", new SymlinkRefusedException(lockPath));
            if (errno != Libc.EINTR)
                throw new VmStoreException($"Cannot open the store lock file '{lockPath}': {Libc.Describe(errno)}");
        }
    }

    public void Dispose()
    {
        var fd = Interlocked.Exchange(ref _fd, -1);
        if (fd >= 0)
            Libc.Close(fd); // closing the last descriptor of the open file description releases the flock
    }
}
