using System.Runtime.InteropServices;
using System.Text;

namespace KvmPS.Interop;

/// <summary>
/// Linux tun/tap (Documentation/networking/tuntap.rst) and the network-device ioctls a tap back-end needs:
/// interface flags, index and MTU (netdevice(7)) and bridge port add/remove (SIOCBRADDIF/SIOCBRDELIF).
/// </summary>
internal static unsafe partial class Tun
{
    public const int IFNAMSIZ = 16;

    // <linux/if_tun.h>: _IOW('T', nr, int|unsigned int)
    public const uint TUNSETIFF = 0x400454ca, TUNSETPERSIST = 0x400454cb, TUNSETOFFLOAD = 0x400454d0, TUNSETVNETHDRSZ = 0x400454d8;
    public const uint TUNGETIFF = 0x800454d2;
    public const short IFF_TUN = 0x0001, IFF_TAP = 0x0002, IFF_PERSIST = 0x0800, IFF_NO_PI = 0x1000, IFF_VNET_HDR = 0x4000;

    // <linux/sockios.h>
    public const uint SIOCGIFFLAGS = 0x8913, SIOCSIFFLAGS = 0x8914, SIOCSIFMTU = 0x8922, SIOCGIFINDEX = 0x8933;
    public const uint SIOCBRADDIF = 0x89a2, SIOCBRDELIF = 0x89a3, SIOCETHTOOL = 0x8946;
    // <linux/ethtool.h>: struct ethtool_drvinfo is the command word, then the driver's name (32 bytes), …; 196 bytes.
    public const uint ETHTOOL_GDRVINFO = 3;
    public const int EthtoolDrvinfoBytes = 196, EthtoolDriverOffset = 4, EthtoolDriverBytes = 32;
    // <net/if.h>
    public const short IFF_UP = 0x1;

    public const int AF_INET = 2, SOCK_DGRAM = 2, SOCK_CLOEXEC = 0x80000;
    public const int ENODEV = 19, EBUSY = 16, EINVAL = 22, EOPNOTSUPP = 95;

    /// <summary><c>struct ifreq</c> on x86-64: the name, then a 24-byte union (flags / ifindex / mtu / …); 40 bytes.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 40)]
    public struct IfReq
    {
        [FieldOffset(0)] public fixed byte ifr_name[IFNAMSIZ];
        [FieldOffset(16)] public short ifr_flags;
        [FieldOffset(16)] public int ifr_ifindex;
        [FieldOffset(16)] public int ifr_mtu;
        [FieldOffset(16)] public nint ifr_data;

        public static IfReq ForName(string name)
        {
            var r = default(IfReq);
            byte[] bytes = Encoding.ASCII.GetBytes(name);
            if (bytes.Length >= IFNAMSIZ) throw new ArgumentException($"interface name '{name}' is longer than {IFNAMSIZ - 1} bytes");
            for (int i = 0; i < bytes.Length; i++) r.ifr_name[i] = bytes[i];
            return r;
        }

        public readonly string Name
        {
            get
            {
                fixed (byte* p = ifr_name)
                {
                    int n = 0;
                    while (n < IFNAMSIZ && p[n] != 0) n++;
                    return Encoding.ASCII.GetString(p, n);
                }
            }
        }
    }

    [LibraryImport(Libc.Lib, EntryPoint = "socket", SetLastError = true)]
    public static partial int Socket(int domain, int type, int protocol);

    /// <summary>A control socket for the SIOC* ioctls (any AF_INET datagram socket will do).</summary>
    public static int OpenControlSocket()
    {
        int s = Socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (s < 0) throw NativeCallException.FromLastError("socket(AF_INET, SOCK_DGRAM)");
        return s;
    }

    /// <summary>Runs one ifreq ioctl on a fresh control socket; returns errno (0 on success).</summary>
    public static int NetIoctl(uint request, ref IfReq req)
    {
        int s = OpenControlSocket();
        try
        {
            fixed (IfReq* p = &req)
                return Libc.Ioctl(s, request, p) == 0 ? 0 : Marshal.GetLastPInvokeError();
        }
        finally { Libc.Close(s); }
    }

    // By ioctl on a socket, not /sys/class/net: a socket belongs to the calling thread's network namespace, /sys to
    // the one its mounter had (management makes a tap in a VMM's namespace from a thread that entered it).

    /// <summary>Whether an interface of that name exists in the calling thread's network namespace.</summary>
    public static bool InterfaceExists(string name)
    {
        IfReq req;
        try { req = IfReq.ForName(name); }
        catch (ArgumentException) { return false; } // longer than an interface name can be
        return NetIoctl(SIOCGIFINDEX, ref req) == 0;
    }

    /// <summary>Whether <paramref name="name"/> is a bridge: its driver, as ethtool reports it, is "bridge".</summary>
    public static bool IsBridge(string name)
    {
        IfReq req;
        try { req = IfReq.ForName(name); }
        catch (ArgumentException) { return false; }
        byte* info = stackalloc byte[EthtoolDrvinfoBytes];
        new Span<byte>(info, EthtoolDrvinfoBytes).Clear();
        *(uint*)info = ETHTOOL_GDRVINFO;
        req.ifr_data = (nint)info;
        if (NetIoctl(SIOCETHTOOL, ref req) != 0) return false;
        var driver = new ReadOnlySpan<byte>(info + EthtoolDriverOffset, EthtoolDriverBytes);
        int end = driver.IndexOf((byte)0);
        return driver[..(end < 0 ? EthtoolDriverBytes : end)].SequenceEqual("bridge"u8);
    }
}

/// <summary>
/// A tap interface opened on /dev/net/tun in non-blocking mode with a virtio-net header (IFF_TAP | IFF_NO_PI |
/// IFF_VNET_HDR). Each read returns one frame preceded by the vnet header; each write sends one.
/// The handle also owns an epoll instance and an eventfd so one thread can wait for "readable" one-shot.
/// </summary>
public sealed unsafe class TapHandle : FileDescriptorHandle
{
    private TapHandle(int fd) : base(fd) { }

    /// <summary>The kernel's name for the interface (differs from the request for templates like "tap%d").</summary>
    public string InterfaceName { get; private set; } = "";

    /// <summary>
    /// TUNSETIFF: attaches to the tap <paramref name="name"/>, creating it if it does not exist (needs CAP_NET_ADMIN).
    /// Returns the errno of TUNSETIFF through <paramref name="errno"/> with null, so the caller can explain it.
    /// </summary>
    public static TapHandle? TryOpen(string name, out int errno, out string call)
    {
        call = "open(/dev/net/tun)";
        int fd = Libc.Open("/dev/net/tun", Libc.O_RDWR | Libc.O_NONBLOCK | Libc.O_CLOEXEC, 0);
        if (fd < 0) { errno = Marshal.GetLastPInvokeError(); return null; }
        var handle = new TapHandle(fd);
        var req = Tun.IfReq.ForName(name);
        req.ifr_flags = Tun.IFF_TAP | Tun.IFF_NO_PI | Tun.IFF_VNET_HDR;
        call = "ioctl(TUNSETIFF)";
        if (Libc.Ioctl(fd, Tun.TUNSETIFF, &req) != 0)
        {
            errno = Marshal.GetLastPInvokeError();
            handle.Dispose();
            return null;
        }
        handle.InterfaceName = req.Name;
        errno = 0;
        return handle;
    }

    /// <summary>
    /// A tun/tap descriptor another process opened and passed over a Unix socket (a live upgrade, SCM_RIGHTS): the handle
    /// takes it over from <paramref name="received"/>, and TUNGETIFF tells the interface it is attached to and its flags
    /// (IFF_TAP, IFF_NO_PI, IFF_VNET_HDR, IFF_PERSIST for one made with <c>ip tuntap add</c>). Null with the errno when the
    /// descriptor is not one of an attached tun/tap (EBADFD, EINVAL, ENOTTY); it is closed then.
    /// </summary>
    public static TapHandle? FromDescriptor(SafeHandle received, out short flags, out int errno)
    {
        var handle = new TapHandle((int)received.DangerousGetHandle());
        received.SetHandleAsInvalid();
        var req = default(Tun.IfReq);
        if (Libc.Ioctl(handle.Fd, Tun.TUNGETIFF, &req) != 0)
        {
            errno = Marshal.GetLastPInvokeError();
            flags = 0;
            handle.Dispose();
            return null;
        }
        handle.InterfaceName = req.Name;
        flags = req.ifr_flags;
        errno = 0;
        return handle;
    }

    /// <summary>TUNSETVNETHDRSZ: the size of the header in front of each frame (10, or 12 with num_buffers).</summary>
    public void SetVnetHeaderSize(int size)
    {
        int v = size;
        if (Libc.Ioctl(Fd, Tun.TUNSETVNETHDRSZ, &v) != 0) throw NativeCallException.FromLastError("ioctl(TUNSETVNETHDRSZ)", InterfaceName);
    }

    /// <summary>TUNSETOFFLOAD: which offloads (TUN_F_CSUM, TUN_F_TSO4, …) the reader accepts; 0 = whole, checksummed frames.</summary>
    public void SetOffload(uint flags)
    {
        if (Libc.Ioctl(Fd, Tun.TUNSETOFFLOAD, (nint)flags) != 0) throw NativeCallException.FromLastError("ioctl(TUNSETOFFLOAD)", InterfaceName);
    }

    /// <summary>Reads one packet; returns its length, 0 when none is queued (EAGAIN), or -errno.</summary>
    public int Read(Span<byte> buffer)
    {
        fixed (byte* p = buffer)
        {
            while (true)
            {
                nint n = Libc.Read(Fd, p, (nuint)buffer.Length);
                if (n >= 0) return (int)n;
                int e = Marshal.GetLastPInvokeError();
                if (e == Libc.EINTR) continue;
                return e == Libc.EAGAIN ? 0 : -e;
            }
        }
    }

    /// <summary>Writes one packet; returns 0 on success, else the errno (EAGAIN: the tap's queue is full).</summary>
    public int Write(ReadOnlySpan<byte> packet)
    {
        fixed (byte* p = packet)
        {
            while (true)
            {
                nint n = Libc.Write(Fd, p, (nuint)packet.Length);
                if (n >= 0) return 0;
                int e = Marshal.GetLastPInvokeError();
                if (e != Libc.EINTR) return e;
            }
        }
    }

    // ---- interface configuration (through an AF_INET control socket) ----

    /// <summary>Sets IFF_UP on <paramref name="name"/> if it is not set yet; returns errno (0 on success).</summary>
    public static int BringUp(string name)
    {
        var req = Tun.IfReq.ForName(name);
        int e = Tun.NetIoctl(Tun.SIOCGIFFLAGS, ref req);
        if (e != 0 || (req.ifr_flags & Tun.IFF_UP) != 0) return e;
        req.ifr_flags |= Tun.IFF_UP;
        return Tun.NetIoctl(Tun.SIOCSIFFLAGS, ref req);
    }

    public static int SetMtu(string name, int mtu)
    {
        var req = Tun.IfReq.ForName(name);
        req.ifr_mtu = mtu;
        return Tun.NetIoctl(Tun.SIOCSIFMTU, ref req);
    }

    /// <summary>SIOCBRADDIF / SIOCBRDELIF: adds or removes port <paramref name="port"/> on <paramref name="bridge"/>; returns errno.</summary>
    public static int BridgePort(string bridge, string port, bool add)
    {
        var req = Tun.IfReq.ForName(port);
        int e = Tun.NetIoctl(Tun.SIOCGIFINDEX, ref req);
        if (e != 0) return e;
        int index = req.ifr_ifindex;
        req = Tun.IfReq.ForName(bridge);
        req.ifr_ifindex = index;
        return Tun.NetIoctl(add ? Tun.SIOCBRADDIF : Tun.SIOCBRDELIF, ref req);
    }

    public static bool InterfaceExists(string name) => Tun.InterfaceExists(name);
    public static bool IsBridge(string name) => Tun.IsBridge(name);
}

/// <summary>
/// Waits on one file descriptor with a one-shot EPOLLIN registration (re-armed explicitly), plus an eventfd to
/// stop the waiting thread. Level-triggered + one-shot: a reader that cannot consume (no guest buffers) simply
/// does not re-arm, so the thread sleeps instead of spinning.
/// </summary>
public sealed unsafe class OneShotPoller : IDisposable
{
    private const ulong WatchToken = 1, WakeToken = 2;
    private readonly EpollHandle _epoll = EpollHandle.Create();
    private readonly EventFdHandle _wake = EventFdHandle.Create();
    private readonly FileDescriptorHandle _target;
    private int _disposed;

    public OneShotPoller(FileDescriptorHandle target)
    {
        _target = target;
        _epoll.Add(_wake, WakeToken);
        var ev = new Epoll.EpollEvent { events = 0 | EPOLLONESHOT, data = WatchToken }; // registered disarmed
        if (Epoll.Ctl(_epoll.Fd, Epoll.EPOLL_CTL_ADD, target.Fd, &ev) != 0) throw NativeCallException.FromLastError("epoll_ctl(ADD)");
    }

    private const uint EPOLLONESHOT = 1u << 30;

    /// <summary>Arms the watch: the next <see cref="Wait"/> returns true once the target is readable (or already is).</summary>
    public void Arm()
    {
        if (Volatile.Read(ref _disposed) != 0 || _target.IsClosed) return;
        var ev = new Epoll.EpollEvent { events = Epoll.EPOLLIN | EPOLLONESHOT, data = WatchToken };
        Epoll.Ctl(_epoll.Fd, Epoll.EPOLL_CTL_MOD, _target.Fd, &ev);
    }

    /// <summary>Blocks until the armed target is readable (true) or <see cref="Wake"/> was called (false).</summary>
    public bool Wait()
    {
        Span<ulong> tokens = stackalloc ulong[4];
        while (true)
        {
            int n = _epoll.Wait(tokens, -1);
            bool readable = false;
            for (int i = 0; i < n; i++)
            {
                if (tokens[i] == WakeToken) { _wake.Consume(); return false; }
                if (tokens[i] == WatchToken) readable = true;
            }
            if (readable) return true;
        }
    }

    public void Wake() => _wake.Signal();

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _epoll.Dispose();
        _wake.Dispose();
    }
}
