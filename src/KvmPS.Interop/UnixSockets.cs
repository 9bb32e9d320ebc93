using System.Net.Sockets;

namespace KvmPS.Interop;

/// <summary>Listening Unix sockets whose file nobody but the owner can use, from the moment it exists.</summary>
public static class UnixSockets
{
    private const uint OwnerReadWrite = 0x180; // 0600

    /// <summary>
    /// Binds <paramref name="socket"/> to <paramref name="path"/>, the file born mode 0600. Linux gives a socket file
    /// the socket inode's own mode minus the umask (unix_bind), so an fchmod before the bind does it without touching
    /// the process-wide umask, which another thread creating a file or socket at that moment would see too.
    /// </summary>
    public static void BindOwnerOnly(Socket socket, string path)
    {
        if (Libc.Fchmod((int)socket.Handle, OwnerReadWrite) != 0) throw NativeCallException.FromLastError("fchmod", path);
        socket.Bind(new UnixDomainSocketEndPoint(path));
    }
}
