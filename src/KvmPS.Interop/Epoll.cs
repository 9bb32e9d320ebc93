using System.Runtime.InteropServices;

namespace KvmPS.Interop;

/// <summary>epoll(7) imports for the device I/O thread (ioeventfd queue notifications) and the vsock host thread (sockets).</summary>
internal static unsafe partial class Epoll
{
    public const int EPOLL_CLOEXEC = 0x80000;
    public const int EPOLL_CTL_ADD = 1, EPOLL_CTL_DEL = 2, EPOLL_CTL_MOD = 3;
    public const uint EPOLLIN = 0x001, EPOLLOUT = 0x004, EPOLLERR = 0x008, EPOLLHUP = 0x010, EPOLLRDHUP = 0x2000, EPOLLET = 1u << 31;

    /// <summary><c>struct epoll_event</c> is packed on x86-64: 4-byte events, then the 8-byte data union (12 bytes).</summary>
    [StructLayout(LayoutKind.Sequential, Pack = 4)]
    public struct EpollEvent
    {
        public uint events;
        public ulong data;
    }

    [LibraryImport(Libc.Lib, EntryPoint = "epoll_create1", SetLastError = true)]
    public static partial int Create1(int flags);

    [LibraryImport(Libc.Lib, EntryPoint = "epoll_ctl", SetLastError = true)]
    public static partial int Ctl(int epfd, int op, int fd, EpollEvent* ev);

    [LibraryImport(Libc.Lib, EntryPoint = "epoll_wait", SetLastError = true)]
    public static partial int Wait(int epfd, EpollEvent* events, int maxevents, int timeout);
}

/// <summary>An epoll instance fd.</summary>
public sealed class EpollHandle : FileDescriptorHandle
{
    private EpollHandle(int fd) : base(fd) { }

    public static EpollHandle Create()
    {
        int fd = Epoll.Create1(Epoll.EPOLL_CLOEXEC);
        if (fd < 0) throw NativeCallException.FromLastError("epoll_create1");
        return new EpollHandle(fd);
    }

    /// <summary>Watches <paramref name="target"/> for readability; <paramref name="token"/> comes back from <see cref="Wait"/>.</summary>
    public unsafe void Add(FileDescriptorHandle target, ulong token)
    {
        var ev = new Epoll.EpollEvent { events = Epoll.EPOLLIN, data = token };
        if (Epoll.Ctl(Fd, Epoll.EPOLL_CTL_ADD, target.Fd, &ev) != 0) throw NativeCallException.FromLastError("epoll_ctl(ADD)");
    }

    /// <summary>
    /// Watches a socket (or any fd-backed handle) for <paramref name="events"/> (<see cref="Epoll"/>'s EPOLL* bits, e.g.
    /// EPOLLIN | EPOLLOUT | EPOLLET); <paramref name="token"/> comes back from <see cref="Wait"/>.
    /// </summary>
    public unsafe void Add(SafeHandle target, ulong token, uint events)
    {
        bool added = false;
        try
        {
            target.DangerousAddRef(ref added);
            var ev = new Epoll.EpollEvent { events = events, data = token };
            if (Epoll.Ctl(Fd, Epoll.EPOLL_CTL_ADD, (int)target.DangerousGetHandle(), &ev) != 0) throw NativeCallException.FromLastError("epoll_ctl(ADD)");
        }
        finally { if (added) target.DangerousRelease(); }
    }

    /// <summary>Stops watching a handle added with <see cref="Add(SafeHandle, ulong, uint)"/>; a closed handle is skipped.</summary>
    public unsafe void Remove(SafeHandle target)
    {
        bool added = false;
        try
        {
            target.DangerousAddRef(ref added);
            var ev = default(Epoll.EpollEvent);
            Epoll.Ctl(Fd, Epoll.EPOLL_CTL_DEL, (int)target.DangerousGetHandle(), &ev);
        }
        catch (ObjectDisposedException) { } // closing the fd already took it out of the epoll set
        finally { if (added) target.DangerousRelease(); }
    }

    public unsafe void Remove(FileDescriptorHandle target)
    {
        var ev = default(Epoll.EpollEvent);
        Epoll.Ctl(Fd, Epoll.EPOLL_CTL_DEL, target.Fd, &ev); // a closed or unknown fd is not an error here
    }

    /// <summary>Waits for events; returns how many tokens were written (0 on timeout or EINTR).</summary>
    public unsafe int Wait(Span<ulong> tokens, int timeoutMs)
    {
        int max = Math.Min(tokens.Length, 64);
        var events = stackalloc Epoll.EpollEvent[max];
        int n = Epoll.Wait(Fd, events, max, timeoutMs);
        if (n < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno == Libc.EINTR) return 0;
            throw new NativeCallException("epoll_wait", errno);
        }
        for (int i = 0; i < n; i++) tokens[i] = events[i].data;
        return n;
    }
}
