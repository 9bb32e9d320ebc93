using System.Runtime.InteropServices;
using KvmPS.Interop;

namespace KvmPS.Storage.Locking;

/// <summary>
/// Image locking interoperable with QEMU's file-posix driver: shared OFD byte-range locks at
/// RAW_LOCK_PERM_BASE + bit for permissions held and RAW_LOCK_SHARED_BASE + bit for permissions
/// not shared. Conflicts are detected by testing whether an exclusive lock on the opposite byte
/// would be blocked. Locks belong to the open file description, so they vanish when the file is
/// closed (including on process death) and two opens in one process conflict like two processes.
/// </summary>
internal static class QemuImageLock
{
    public const int RAW_LOCK_PERM_BASE = 100;
    public const int RAW_LOCK_SHARED_BASE = 200;

    /// <summary>What a writer (a running VM's disk) needs: read, write and grow the file.</summary>
    public static readonly QemuPermission WriterPermissions =
        QemuPermission.ConsistentRead | QemuPermission.Write | QemuPermission.Resize;

    /// <summary>What a reader needs.</summary>
    public static readonly QemuPermission ReaderPermissions = QemuPermission.ConsistentRead;

    /// <summary>Like QEMU's default (share-rw=off): others may read, but not write or resize.</summary>
    public static readonly QemuPermission DefaultSharedPermissions =
        QemuPermission.ConsistentRead | QemuPermission.WriteUnchanged;

    /// <summary>
    /// How long a conflict is looked at again before the image counts as in use. A holder that just closed the image
    /// can still hold its locks for a moment: a process forked meanwhile (Process.Start, here or in any program)
    /// shares every open file description, and so its locks, until its exec closes them. A real user of the image
    /// holds them for as long as it runs, so waiting about 160 ms only delays that refusal.
    /// </summary>
    private static readonly int[] ConflictRetryDelaysMs = [1, 2, 5, 10, 20, 40, 80];

    /// <summary>Takes the locks for an opener and checks for conflicting holders.</summary>
    /// <exception cref="ImageInUseException">Another open file description conflicts.</exception>
    public static void Acquire(ImageFile file, QemuPermission permissions, QemuPermission sharedPermissions)
    {
        for (int attempt = 0; ; attempt++)
        {
            string? conflict = TryAcquire(file, permissions, sharedPermissions);
            if (conflict is null) return;
            if (attempt == ConflictRetryDelaysMs.Length)
            {
                // Our bytes were published before the conflict was seen: taken back, or they would outlive this failed
                // open on a description someone keeps (a migration source's kept disk files) and refuse later openers.
                Release(file.Path, file.FileDescriptor);
                throw new ImageInUseException(file.Path, conflict);
            }
            Thread.Sleep(ConflictRetryDelaysMs[attempt]);
        }
    }

    /// <summary>
    /// Drops every lock the open file description of <paramref name="fd"/> holds, keeping the file open: a migration
    /// over tcp lets the destination lock the image while the source keeps its descriptor, so that it can lock it again
    /// (<see cref="Acquire"/>) if the destination refuses, without opening the path, which a jailed VMM may not.
    /// </summary>
    public static void Release(string path, int fd)
    {
        // l_len 0: to the end of the file, so every lock byte at once.
        var fl = new Flock { l_type = Libc.F_UNLCK, l_whence = Libc.SEEK_SET, l_start = 0, l_len = 0 };
        while (Libc.fcntl(fd, Libc.F_OFD_SETLK, ref fl) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno != Libc.EINTR)
                throw new DiskImageException(path, $"Unlocking disk image '{path}' failed (errno {errno}).");
        }
    }

    /// <summary>Publishes our locks (again: taking a held lock is a no-op) and returns the first conflict, or null.</summary>
    private static string? TryAcquire(ImageFile file, QemuPermission permissions, QemuPermission sharedPermissions)
    {
        int fd = file.FileDescriptor;
        QemuPermission notShared = QemuPermission.All & ~sharedPermissions;

        // Same order as QEMU: publish our own locks first, then look for conflicts. Two openers
        // racing thus see each other and at worst both fail, never both succeed.
        for (int bit = 0; (1UL << bit) <= (ulong)QemuPermission.All; bit++)
        {
            var p = (QemuPermission)(1UL << bit);
            if ((permissions & p) != 0 && !TrySetSharedLock(file, fd, RAW_LOCK_PERM_BASE + bit))
            {
                return $"lock byte {RAW_LOCK_PERM_BASE + bit}";
            }
            if ((notShared & p) != 0 && !TrySetSharedLock(file, fd, RAW_LOCK_SHARED_BASE + bit))
            {
                return $"lock byte {RAW_LOCK_SHARED_BASE + bit}";
            }
        }
        for (int bit = 0; (1UL << bit) <= (ulong)QemuPermission.All; bit++)
        {
            var p = (QemuPermission)(1UL << bit);
            // Someone refusing to share a permission we want holds RAW_LOCK_SHARED_BASE + bit.
            if ((permissions & p) != 0 && IsLockedByOthers(file, fd, RAW_LOCK_SHARED_BASE + bit))
            {
                return PermissionName(p);
            }
            // Someone holding a permission we refuse to share holds RAW_LOCK_PERM_BASE + bit.
            if ((notShared & p) != 0 && IsLockedByOthers(file, fd, RAW_LOCK_PERM_BASE + bit))
            {
                return PermissionName(p);
            }
        }
        return null;
    }

    private static string PermissionName(QemuPermission p) => p switch
    {
        QemuPermission.ConsistentRead => "consistent read",
        QemuPermission.Write => "write",
        QemuPermission.WriteUnchanged => "write unchanged",
        QemuPermission.Resize => "resize",
        _ => p.ToString(),
    };

    /// <summary>Takes a shared lock on one byte; false when someone holds an exclusive lock on it.</summary>
    private static bool TrySetSharedLock(ImageFile file, int fd, int byteOffset)
    {
        var fl = new Flock { l_type = Libc.F_RDLCK, l_whence = Libc.SEEK_SET, l_start = byteOffset, l_len = 1 };
        while (Libc.fcntl(fd, Libc.F_OFD_SETLK, ref fl) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno == Libc.EINTR)
            {
                continue;
            }
            if (errno == Libc.EAGAIN || errno == Libc.EACCES)
            {
                // Someone holds an exclusive lock on the byte: nobody QEMU-compatible does that
                // for long, but it still means the image is busy.
                return false;
            }
            throw new DiskImageException(file.Path, $"Locking byte {byteOffset} of disk image '{file.Path}' failed (errno {errno}).");
        }
        return true;
    }

    private static bool IsLockedByOthers(ImageFile file, int fd, int byteOffset)
    {
        var fl = new Flock { l_type = Libc.F_WRLCK, l_whence = Libc.SEEK_SET, l_start = byteOffset, l_len = 1 };
        while (Libc.fcntl(fd, Libc.F_OFD_GETLK, ref fl) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno != Libc.EINTR)
            {
                throw new DiskImageException(file.Path, $"Testing lock byte {byteOffset} of disk image '{file.Path}' failed (errno {errno}).");
            }
        }
        return fl.l_type != Libc.F_UNLCK;
    }
}
