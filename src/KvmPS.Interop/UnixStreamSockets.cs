using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace KvmPS.Interop;

/// <summary>
/// Connected Unix stream sockets passed as open files (docs/vmm.md "Passing open files"): management connects a
/// vfio-user server's socket a jailed VMM may not reach, and the VMM checks that what came is such a socket. Plain
/// descriptors, not <see cref="System.Net.Sockets.Socket"/>: the connection is shared with another process, and the
/// runtime's socket disposal may shut a socket down rather than only close this process's descriptor.
/// </summary>
public static unsafe partial class UnixStreamSockets
{
    private const int AF_UNIX = 1, SOCK_STREAM = 1, SOCK_CLOEXEC = 0x80000, SOL_SOCKET = 1, SO_TYPE = 3, SO_DOMAIN = 39;
    private const int ENOTCONN = 107, ENOTSOCK = 88;
    private const uint S_IFIFO = 0x1000, S_IFCHR = 0x2000;
    /// <summary>sun_path's size in struct sockaddr_un (the path and its terminating NUL).</summary>
    private const int SunPathBytes = 108;

    [LibraryImport(Libc.Lib, EntryPoint = "socket", SetLastError = true)]
    private static partial int Socket(int domain, int type, int protocol);

    [LibraryImport(Libc.Lib, EntryPoint = "connect", SetLastError = true)]
    private static partial int Connect(int fd, byte* address, uint length);

    [LibraryImport(Libc.Lib, EntryPoint = "getsockopt", SetLastError = true)]
    private static partial int GetSockOpt(int fd, int level, int name, out int value, ref uint length);

    [LibraryImport(Libc.Lib, EntryPoint = "getpeername", SetLastError = true)]
    private static partial int GetPeerName(int fd, byte* address, ref uint length);

    /// <summary>A blocking, close-on-exec stream socket connected to <paramref name="path"/>.</summary>
    /// <exception cref="NativeCallException">The path is too long, or socket/connect failed (errno and path named).</exception>
    public static SafeFileHandle Connect(string path)
    {
        var name = Encoding.UTF8.GetBytes(path);
        if (name.Length == 0 || name.Length >= SunPathBytes) throw new NativeCallException("connect", 36 /* ENAMETOOLONG */, path);
        byte* address = stackalloc byte[2 + SunPathBytes];
        new Span<byte>(address, 2 + SunPathBytes).Clear();
        *(ushort*)address = AF_UNIX;
        name.CopyTo(new Span<byte>(address + 2, SunPathBytes));
        int fd = Socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) throw NativeCallException.FromLastError("socket", path);
        var handle = new SafeFileHandle(fd, ownsHandle: true);
        int result;
        do result = Connect(fd, address, (uint)(2 + name.Length + 1));
        while (result != 0 && Marshal.GetLastPInvokeError() == Libc.EINTR);
        if (result != 0)
        {
            var error = NativeCallException.FromLastError("connect", path);
            handle.Dispose();
            throw error;
        }
        return handle;
    }

    /// <summary>
    /// Null when <paramref name="handle"/> is a connected AF_UNIX SOCK_STREAM socket; else what it is, for an error
    /// ("a pipe", "a datagram socket", "a Unix stream socket that is not connected", …).
    /// </summary>
    public static string? WhyNotConnected(SafeHandle handle)
    {
        bool added = false;
        handle.DangerousAddRef(ref added);
        try
        {
            int fd = (int)handle.DangerousGetHandle();
            if (Libc.Fstat(fd, out var status) != 0) return $"a descriptor fstat refuses ({Libc.Describe(Marshal.GetLastPInvokeError())})";
            uint kind = status.st_mode & Libc.S_IFMT;
            if (kind != Libc.S_IFSOCK) return KindName(kind);
            uint length = sizeof(int);
            if (GetSockOpt(fd, SOL_SOCKET, SO_DOMAIN, out int domain, ref length) != 0) return $"a socket whose family cannot be read ({Libc.Describe(Marshal.GetLastPInvokeError())})";
            if (domain != AF_UNIX) return $"a socket of address family {domain}, not a Unix socket";
            length = sizeof(int);
            if (GetSockOpt(fd, SOL_SOCKET, SO_TYPE, out int type, ref length) != 0) return $"a Unix socket whose type cannot be read ({Libc.Describe(Marshal.GetLastPInvokeError())})";
            if (type != SOCK_STREAM) return $"a Unix socket of type {type} (datagram: 2, seqpacket: 5), not a stream socket";
            byte* peer = stackalloc byte[2 + SunPathBytes];
            length = 2 + SunPathBytes;
            if (GetPeerName(fd, peer, ref length) != 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                return errno == ENOTCONN ? "a Unix stream socket that is not connected (unconnected or listening)"
                    : errno == ENOTSOCK ? "not a socket" : $"a Unix stream socket whose peer cannot be read ({Libc.Describe(errno)})";
            }
            return null;
        }
        finally
        {
            if (added) handle.DangerousRelease();
        }
    }

    private static string KindName(uint kind) => kind switch
    {
        S_IFIFO => "a pipe",
        Libc.S_IFREG => "a regular file",
        Libc.S_IFDIR => "a directory",
        S_IFCHR => "a character device",
        Libc.S_IFBLK => "a block device",
        _ => $"a file of type 0x{kind:x} (not a socket)",
    };
}
