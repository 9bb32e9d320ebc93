using KvmPS.Interop;
using Microsoft.Win32.SafeHandles;

namespace KvmPS.Storage;

/// <summary>
/// The files of one disk handed over by another process (a live upgrade), taken in chain order as the image and its
/// backing files are opened by path: each must be the file its path names here (same device and inode), so a wrong
/// or swapped descriptor can never become the guest's disk, and writable where the image is written.
/// </summary>
/// Files management passed (<paramref name="checkIdentity"/> false) are not compared with their paths: a jailed VMM
/// may not see the path at all, and management, which opened them, is the authority on what they are.
internal sealed class HandedOverFiles(IReadOnlyList<SafeFileHandle> files, bool checkIdentity = true)
{
    private const int O_ACCMODE = 3;
    private const int F_GETFL = 3;
    private int _next;

    public int Left => files.Count - _next;

    public ImageFile Take(string path, bool writable)
    {
        if (_next == files.Count)
            throw new DiskImageException(path, $"No file was handed over for disk image '{path}' (the backing chain has more images than the {files.Count} files handed over).");
        var handle = files[_next++];
        try { return Check(path, writable, handle); }
        catch
        {
            handle.Dispose(); // taken but refused: no image owns it
            throw;
        }
    }

    private ImageFile Check(string path, bool writable, SafeFileHandle handle)
    {
        int fd = (int)handle.DangerousGetHandle();
        if (Libc.Fstat(fd, out var handed) != 0)
            throw new DiskImageException(path, $"The file handed over for disk image '{path}' cannot be examined (fstat: {NativeCallException.FromLastError("fstat").Message}).");
        if (checkIdentity)
        {
            if (Libc.FstatAt(Libc.AT_FDCWD, path, out var named, 0) != 0)
                throw new DiskImageException(path, $"Disk image '{path}' cannot be examined here ({NativeCallException.FromLastError("stat", path).Message}).");
            if (handed.st_dev != named.st_dev || handed.st_ino != named.st_ino)
                throw new DiskImageException(path,
                    $"The file handed over for disk image '{path}' is another file (device {handed.st_dev}, inode {handed.st_ino}) than the one that path names here (device {named.st_dev}, inode {named.st_ino}).");
        }
        int flags = Libc.FcntlInt(fd, F_GETFL, 0);
        if (flags < 0)
            throw new DiskImageException(path, $"The file handed over for disk image '{path}' cannot be examined (fcntl F_GETFL failed).");
        if (writable && (flags & O_ACCMODE) != Libc.O_RDWR)
            throw new DiskImageException(path, $"The file {(checkIdentity ? "handed over" : "passed")} for disk image '{path}' is not open for reading and writing, but the disk is written.");
        return ImageFile.FromHandle(path, handle, writable);
    }

    /// <summary>Closes the files no image took (a chain that ended early, or a failure before them).</summary>
    public void CloseUntaken()
    {
        for (int i = _next; i < files.Count; i++) files[i].Dispose();
    }
}
