using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace KvmPS.Interop;

/// <summary>A path that had to be a plain file or folder was a symbolic link (or could not be opened without following one).</summary>
public sealed class SymlinkRefusedException : IOException
{
    public SymlinkRefusedException(string path)
        : base($"'{path}' is a symbolic link; KvmPS does not follow links inside its store (someone may have planted it to redirect writes). Remove the link ('rm {path}') and retry.")
    {
        Path = path;
        HResult = Libc.ELOOP;
    }

    public string Path { get; }
}

/// <summary>
/// Opens files in a folder without following symlinks: the folder is opened with <c>O_DIRECTORY | O_NOFOLLOW</c> and
/// the file with <c>openat(dirfd, name, O_NOFOLLOW)</c>, so a link planted as the folder or as the file makes the open
/// fail (<see cref="SymlinkRefusedException"/>) instead of writing through it. New files get <paramref name="createMode"/>
/// exactly (the umask can only narrow it; 0600 is the store's mode).
/// </summary>
public static class NoFollowFile
{
    /// <summary>rw------- : the mode of every file KvmPS creates in its store.</summary>
    public const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    /// <summary>Opens (creating with <paramref name="createMode"/>) <paramref name="path"/> for appending.</summary>
    public static SafeFileHandle OpenAppend(string path, UnixFileMode createMode = OwnerOnly) =>
        Open(path, Libc.O_WRONLY | Libc.O_APPEND | Libc.O_CREAT, createMode);

    /// <summary>Opens (creating with <paramref name="createMode"/>) <paramref name="path"/> for reading and writing, not truncated.</summary>
    public static SafeFileHandle OpenReadWrite(string path, UnixFileMode createMode = OwnerOnly) =>
        Open(path, Libc.O_RDWR | Libc.O_CREAT, createMode);

    /// <summary>Creates <paramref name="path"/>, which must not exist (O_EXCL never follows a link either).</summary>
    public static SafeFileHandle CreateNew(string path, UnixFileMode createMode = OwnerOnly) =>
        Open(path, Libc.O_RDWR | Libc.O_CREAT | Libc.O_EXCL, createMode);

    /// <summary>
    /// Opens the existing file <paramref name="path"/> (no O_CREAT) for reading, or reading and writing: what management
    /// opens for a VMM and passes it (a disk image, docs/vmm.md "Passing open files"). A link as the file or its folder is
    /// refused as for the other opens.
    /// </summary>
    public static SafeFileHandle OpenExisting(string path, bool writable) =>
        Open(path, writable ? Libc.O_RDWR : Libc.O_RDONLY, OwnerOnly);

    /// <summary>A <see cref="FileStream"/> appending to <paramref name="path"/> (see <see cref="OpenAppend"/>).</summary>
    public static FileStream AppendStream(string path, UnixFileMode createMode = OwnerOnly, int bufferSize = 4096) =>
        new(OpenAppend(path, createMode), FileAccess.Write, bufferSize);

    private static SafeFileHandle Open(string path, int flags, UnixFileMode createMode)
    {
        var full = System.IO.Path.GetFullPath(path);
        var directory = System.IO.Path.GetDirectoryName(full) ?? "/";
        var name = System.IO.Path.GetFileName(full);
        if (name.Length == 0) throw new ArgumentException($"'{path}' names no file", nameof(path));

        int dirFd = OpenDirectory(directory);
        try
        {
            while (true)
            {
                int fd = Libc.OpenAt(dirFd, name, flags | Libc.O_NOFOLLOW | Libc.O_CLOEXEC, (int)createMode);
                if (fd >= 0) return new SafeFileHandle(fd, ownsHandle: true);
                int errno = Marshal.GetLastPInvokeError();
                if (errno == Libc.EINTR) continue;
                // O_NOFOLLOW on a final symlink gives ELOOP; with O_CREAT|O_EXCL an existing link gives EEXIST.
                if (errno == Libc.ELOOP || (errno == Libc.EEXIST && IsSymlinkAt(dirFd, name))) throw new SymlinkRefusedException(full);
                if (errno == Libc.ENOENT) throw new FileNotFoundException($"open '{full}' failed: {Libc.Describe(errno)}", full);
                if (errno is Libc.EACCES or Libc.EPERM) throw new UnauthorizedAccessException($"open '{full}' failed: {Libc.Describe(errno)}");
                throw new NativeCallException("openat", errno, full);
            }
        }
        finally
        {
            Libc.Close(dirFd);
        }
    }

    /// <summary>The folder itself, not a link in its place (links in the folders above it are the store root's business).</summary>
    private static int OpenDirectory(string directory)
    {
        while (true)
        {
            int fd = Libc.Open(directory, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_NOFOLLOW | Libc.O_CLOEXEC, 0);
            if (fd >= 0) return fd;
            int errno = Marshal.GetLastPInvokeError();
            if (errno == Libc.EINTR) continue;
            if (errno == Libc.ELOOP || (errno == Libc.ENOTDIR && Libc.FileTypeOf(directory) == Libc.S_IFLNK)) throw new SymlinkRefusedException(directory);
            if (errno == Libc.ENOENT) throw new DirectoryNotFoundException($"open '{directory}' failed: {Libc.Describe(errno)}");
            if (errno is Libc.EACCES or Libc.EPERM) throw new UnauthorizedAccessException($"open '{directory}' failed: {Libc.Describe(errno)}");
            throw new NativeCallException("open", errno, directory);
        }
    }

    private static bool IsSymlinkAt(int dirFd, string name) =>
        Libc.FstatAt(dirFd, name, out var status, Libc.AT_SYMLINK_NOFOLLOW) == 0 && (status.st_mode & Libc.S_IFMT) == Libc.S_IFLNK;
}

/// <summary>Owner, mode and type of a file, read with <c>lstat</c> (a link is reported as the link).</summary>
public readonly record struct FileOwnership(uint OwnerUid, uint GroupGid, uint Mode, bool IsDirectory, bool IsSymlink, bool IsRegularFile)
{
    /// <summary>The permission bits (<c>mode &amp; 07777</c>).</summary>
    public uint Permissions => Mode & 0xFFF;

    /// <summary>The <c>lstat</c> of <paramref name="path"/>; null if it does not exist.</summary>
    public static FileOwnership? Of(string path)
    {
        if (Libc.FstatAt(Libc.AT_FDCWD, path, out var status, Libc.AT_SYMLINK_NOFOLLOW) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno is Libc.ENOENT or Libc.ENOTDIR) return null;
            throw new NativeCallException("lstat", errno, path);
        }
        uint type = status.st_mode & Libc.S_IFMT;
        return new FileOwnership(status.st_uid, status.st_gid, status.st_mode, type == Libc.S_IFDIR, type == Libc.S_IFLNK, type == Libc.S_IFREG);
    }

    /// <summary>The effective user id of this process.</summary>
    public static uint EffectiveUid => Libc.GetEuid();
}

/// <summary>Host block devices (a disk given as <c>/dev/sdX</c>, an LV, a loop device): their size comes from <c>BLKGETSIZE64</c>, <c>st_size</c> is 0.</summary>
public static class BlockDevice
{
    /// <summary>True if <paramref name="handle"/> is a block device.</summary>
    public static bool IsBlockDevice(SafeHandle handle)
    {
        if (Libc.Fstat((int)handle.DangerousGetHandle(), out var status) != 0) throw NativeCallException.FromLastError("fstat");
        return (status.st_mode & Libc.S_IFMT) == Libc.S_IFBLK;
    }

    /// <summary>The size in bytes of the block device open as <paramref name="handle"/>.</summary>
    public static ulong SizeBytes(SafeHandle handle, string path)
    {
        if (Libc.Ioctl((int)handle.DangerousGetHandle(), Libc.BLKGETSIZE64, out ulong size) != 0)
            throw NativeCallException.FromLastError("ioctl BLKGETSIZE64", path);
        return size;
    }
}

/// <summary>Where a path really leads.</summary>
public static class ResolvedPath
{
    /// <summary>
    /// <paramref name="path"/> with every symlink resolved (realpath). A path that does not exist yet resolves through its
    /// deepest existing folder, the missing rest appended as written; so a file about to be created is judged by the
    /// folder it will land in.
    /// </summary>
    public static string Of(string path)
    {
        var full = Path.GetFullPath(path);
        var missing = new Stack<string>();
        var current = full;
        while (true)
        {
            var real = Libc.RealPath(current);
            if (real is not null)
            {
                foreach (var part in missing) real = Path.Combine(real, part);
                return real;
            }
            var parent = Path.GetDirectoryName(current);
            if (parent is null) return full;
            missing.Push(Path.GetFileName(current));
            current = parent;
        }
    }
}
