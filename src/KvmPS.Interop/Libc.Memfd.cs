using System.Runtime.InteropServices;

namespace KvmPS.Interop;

/// <summary>
/// Guest RAM in a memfd, and passing fds between processes over a Unix socket (SCM_RIGHTS): a local live upgrade hands
/// the new VMM the guest's memory itself instead of a copy (docs/migration.md).
/// </summary>
internal static unsafe partial class Libc
{
    // memfd_create(2) flags, from linux/memfd.h.
    public const uint MFD_CLOEXEC = 0x0001, MFD_ALLOW_SEALING = 0x0002, MFD_HUGETLB = 0x0004;
    // fcntl(2) file seals, from linux/fcntl.h.
    public const int F_ADD_SEALS = 1033, F_GET_SEALS = 1034, F_SEAL_SHRINK = 0x0002, F_SEAL_GROW = 0x0004;
    public const int SEEK_END = 2, SEEK_DATA = 3, SEEK_HOLE = 4;
    public const int ENXIO = 6;
    // sys/socket.h
    public const int SOL_SOCKET = 1, SCM_RIGHTS = 1, MSG_CMSG_CLOEXEC = 0x40000000, MSG_NOSIGNAL = 0x4000, MSG_CTRUNC = 0x8;

    [LibraryImport(Lib, EntryPoint = "memfd_create", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int MemfdCreate(string name, uint flags);

    [LibraryImport(Lib, EntryPoint = "ftruncate", SetLastError = true)]
    public static partial int Ftruncate(int fd, long length);

    [LibraryImport(Lib, EntryPoint = "fcntl", SetLastError = true)]
    public static partial int FcntlInt(int fd, int cmd, int arg);

    [LibraryImport(Lib, EntryPoint = "lseek", SetLastError = true)]
    public static partial long Lseek(int fd, long offset, int whence);

    [LibraryImport(Lib, EntryPoint = "sendmsg", SetLastError = true)]
    public static partial nint Sendmsg(nint socket, msghdr* message, int flags);

    [LibraryImport(Lib, EntryPoint = "recvmsg", SetLastError = true)]
    public static partial nint Recvmsg(nint socket, msghdr* message, int flags);

    /// <summary>CMSG_SPACE for <paramref name="fds"/> descriptors: the header, the ints, padded to 8.</summary>
    public static int CmsgSpaceForFds(int fds) => sizeof(cmsghdr) + ((fds * sizeof(int) + 7) & ~7);
    public static int CmsgLenForFds(int fds) => sizeof(cmsghdr) + fds * sizeof(int);
}

/// <summary>
/// A memfd holding guest RAM: sized once and sealed against shrinking and growing, so a process it is passed to can map
/// it without a later truncation turning guest accesses into SIGBUS.
/// </summary>
public sealed class MemfdHandle : FileDescriptorHandle
{
    private MemfdHandle(int fd) : base(fd) { }

    public static MemfdHandle Create(string name, ulong sizeBytes, bool hugetlb)
    {
        int fd = Libc.MemfdCreate(name, Libc.MFD_CLOEXEC | Libc.MFD_ALLOW_SEALING | (hugetlb ? Libc.MFD_HUGETLB : 0));
        if (fd < 0) throw NativeCallException.FromLastError("memfd_create", name);
        var handle = new MemfdHandle(fd);
        try
        {
            if (Libc.Ftruncate(fd, (long)sizeBytes) != 0) throw NativeCallException.FromLastError("ftruncate", name);
            if (Libc.FcntlInt(fd, Libc.F_ADD_SEALS, Libc.F_SEAL_SHRINK | Libc.F_SEAL_GROW) != 0) throw NativeCallException.FromLastError("fcntl(F_ADD_SEALS)", name);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
        return handle;
    }

    /// <summary>Takes ownership of a descriptor received over SCM_RIGHTS.</summary>
    internal static MemfdHandle Adopt(int fd) => new(fd);

    /// <summary>Its size (lseek to the end).</summary>
    public long SizeBytes
    {
        get
        {
            long size = Libc.Lseek(Fd, 0, Libc.SEEK_END);
            if (size < 0) throw NativeCallException.FromLastError("lseek");
            return size;
        }
    }

    /// <summary>True when the size can no longer change (F_SEAL_SHRINK and F_SEAL_GROW set).</summary>
    public bool SizeSealed
    {
        get
        {
            int seals = Libc.FcntlInt(Fd, Libc.F_GET_SEALS, 0);
            return seals >= 0 && (seals & (Libc.F_SEAL_SHRINK | Libc.F_SEAL_GROW)) == (Libc.F_SEAL_SHRINK | Libc.F_SEAL_GROW);
        }
    }

    internal int Descriptor => Fd;

    /// <summary>
    /// The byte ranges that hold data (SEEK_DATA / SEEK_HOLE): pages never written are holes. Exact for shared memory,
    /// swapped-out pages included, which /proc/self/pagemap does not report for it.
    /// </summary>
    public IEnumerable<(long Offset, long Length)> DataRanges()
    {
        long size = SizeBytes;
        for (long at = 0; at < size;)
        {
            long data = Libc.Lseek(Fd, at, Libc.SEEK_DATA);
            if (data < 0)
            {
                if (Marshal.GetLastPInvokeError() == Libc.ENXIO) yield break; // no data after 'at'
                throw NativeCallException.FromLastError("lseek(SEEK_DATA)");
            }
            long hole = Libc.Lseek(Fd, data, Libc.SEEK_HOLE);
            if (hole < 0) throw NativeCallException.FromLastError("lseek(SEEK_HOLE)");
            yield return (data, hole - data);
            at = hole;
        }
    }
}

#pragma warning disable CS8981 // the socket structs keep their C names, as the KVM ones do

/// <summary>struct msghdr, Linux x86-64 (56 bytes; checked by MigrationFdPassingTests).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct msghdr
{
    public void* msg_name;
    public uint msg_namelen;
    public iovec* msg_iov;
    public nuint msg_iovlen;
    public void* msg_control;
    public nuint msg_controllen;
    public int msg_flags;
}

/// <summary>struct iovec (16 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct iovec
{
    public void* iov_base;
    public nuint iov_len;
}

/// <summary>struct cmsghdr (16 bytes on x86-64); the data (CMSG_DATA) follows it.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct cmsghdr
{
    public nuint cmsg_len;
    public int cmsg_level;
    public int cmsg_type;
}

/// <summary>sendmsg/recvmsg with SCM_RIGHTS on a connected Unix stream socket.</summary>
public static unsafe class UnixFdPassing
{
    /// <summary>At most this many descriptors travel with one message.</summary>
    public const int MaxFds = 16;

    /// <summary>Sends the start of <paramref name="data"/> with <paramref name="fds"/> attached; returns the bytes sent (the caller sends the rest).</summary>
    public static int Send(System.Net.Sockets.Socket socket, ReadOnlySpan<byte> data, IReadOnlyList<SafeHandle> fds)
    {
        if (fds.Count is 0 or > MaxFds) throw new ArgumentOutOfRangeException(nameof(fds), $"1-{MaxFds} descriptors per message");
        int space = Libc.CmsgSpaceForFds(fds.Count);
        byte* control = stackalloc byte[space];
        new Span<byte>(control, space).Clear();
        var header = (cmsghdr*)control;
        header->cmsg_len = (nuint)Libc.CmsgLenForFds(fds.Count);
        header->cmsg_level = Libc.SOL_SOCKET;
        header->cmsg_type = Libc.SCM_RIGHTS;
        int* slots = (int*)(control + sizeof(cmsghdr));
        var added = new bool[fds.Count];
        try
        {
            for (int i = 0; i < fds.Count; i++)
            {
                fds[i].DangerousAddRef(ref added[i]);
                slots[i] = (int)fds[i].DangerousGetHandle();
            }
            fixed (byte* p = data)
            {
                var iov = new iovec { iov_base = p, iov_len = (nuint)data.Length };
                var message = new msghdr { msg_iov = &iov, msg_iovlen = 1, msg_control = control, msg_controllen = (nuint)space };
                nint sent;
                do sent = Libc.Sendmsg(socket.Handle, &message, Libc.MSG_NOSIGNAL);
                while (sent < 0 && Marshal.GetLastPInvokeError() == Libc.EINTR);
                if (sent < 0) throw NativeCallException.FromLastError("sendmsg(SCM_RIGHTS)");
                return (int)sent;
            }
        }
        finally
        {
            for (int i = 0; i < fds.Count; i++) if (added[i]) fds[i].DangerousRelease();
        }
    }

    /// <summary>
    /// The descriptors the SCM_RIGHTS control messages of a received <paramref name="message"/> carry, in order, into
    /// <paramref name="into"/> (at most its length; the control buffer holds no more than <see cref="MaxFds"/>).
    /// Returns how many. The caller owns them from here.
    /// </summary>
    internal static int ReceivedDescriptors(byte* control, in msghdr message, Span<int> into)
    {
        int taken = 0;
        for (byte* at = control; message.msg_controllen >= (nuint)sizeof(cmsghdr) && at + sizeof(cmsghdr) <= control + (int)message.msg_controllen;)
        {
            var header = (cmsghdr*)at;
            if (header->cmsg_len < (nuint)sizeof(cmsghdr)) break;
            if (header->cmsg_level == Libc.SOL_SOCKET && header->cmsg_type == Libc.SCM_RIGHTS)
            {
                int count = (int)((header->cmsg_len - (nuint)sizeof(cmsghdr)) / sizeof(int));
                int* slots = (int*)(at + sizeof(cmsghdr));
                for (int i = 0; i < count && taken < into.Length; i++) into[taken++] = slots[i];
            }
            at += ((int)header->cmsg_len + 7) & ~7;
        }
        return taken;
    }

    /// <summary>
    /// Receives up to <paramref name="buffer"/>.Length bytes; descriptors that came with them are added to
    /// <paramref name="fds"/> (close-on-exec). Returns the bytes read, 0 at the end of the stream.
    /// </summary>
    public static int Receive(System.Net.Sockets.Socket socket, Span<byte> buffer, List<MemfdHandle> fds)
    {
        int space = Libc.CmsgSpaceForFds(MaxFds);
        byte* control = stackalloc byte[space];
        new Span<byte>(control, space).Clear();
        fixed (byte* p = buffer)
        {
            var iov = new iovec { iov_base = p, iov_len = (nuint)buffer.Length };
            var message = new msghdr { msg_iov = &iov, msg_iovlen = 1, msg_control = control, msg_controllen = (nuint)space };
            nint got;
            do got = Libc.Recvmsg(socket.Handle, &message, Libc.MSG_CMSG_CLOEXEC);
            while (got < 0 && Marshal.GetLastPInvokeError() == Libc.EINTR);
            if (got < 0) throw NativeCallException.FromLastError("recvmsg");
            Span<int> received = stackalloc int[MaxFds];
            foreach (int fd in received[..ReceivedDescriptors(control, message, received)]) fds.Add(MemfdHandle.Adopt(fd));
            if ((message.msg_flags & Libc.MSG_CTRUNC) != 0) throw new IOException($"more than {MaxFds} descriptors were sent in one message; the rest were dropped");
            return (int)got;
        }
    }
}
