using KvmPS.Interop;
using KvmPS.Threading;

namespace KvmPS.Devices.Virtio.Net;

/// <summary>
/// Where a virtio-net device's frames go. Packets carry the 12-byte virtio_net_hdr (with num_buffers) in front of
/// the Ethernet frame. <see cref="ReceiveReady"/> is raised on the back-end's own thread when a packet may be
/// waiting, at most once per <see cref="ArmReceive"/> (one-shot), so a device without guest buffers does not spin.
/// </summary>
public interface INetBackend : IDisposable
{
    string Name { get; }
    /// <summary>Sends one packet (header + frame); false when the back-end had to drop it.</summary>
    bool Send(ReadOnlySpan<byte> packet);
    /// <summary>Receives one packet into <paramref name="buffer"/>; its length, or 0 when none is queued.</summary>
    int Receive(Span<byte> buffer);
    /// <summary>Asks for one <see cref="ReceiveReady"/> call once a packet is (or already was) queued.</summary>
    void ArmReceive();
    Action? ReceiveReady { get; set; }
}

/// <summary>Why a tap could not be set up; the message names the tap or bridge and the cause.</summary>
public sealed class TapSetupException(string message) : Exception(message);

/// <summary>
/// A Linux tap interface as a virtio-net back-end: opened (or created) with TUNSETIFF IFF_TAP | IFF_NO_PI |
/// IFF_VNET_HDR, header size 12, no offloads; brought up; optionally attached to a bridge. A thread waits for
/// the tap to become readable (one-shot epoll) and raises <see cref="ReceiveReady"/>.
/// </summary>
public sealed class TapDevice : INetBackend
{
    public const int VnetHeaderSize = 12;
    private readonly TapHandle _tap;
    private readonly OneShotPoller _poller;
    private readonly Thread _thread;
    private readonly string? _bridge;
    private readonly bool _created;
    private volatile bool _stopping;
    private volatile int _rxError; // errno of a failed read (not EAGAIN/EINTR): receive is over for this tap

    public string Name { get; }
    public Action? ReceiveReady { get; set; }
    /// <summary>True when this process created the interface (it disappears when the VMM closes it).</summary>
    public bool Created => _created;
    /// <summary>Where the back-end reports trouble (a dead tap); set by whoever owns the device.</summary>
    public Action<string>? Log { get; set; }
    /// <summary>The errno that stopped receiving (e.g. ENODEV/EBADFD after <c>ip link del</c>), or 0.</summary>
    public int RxError => _rxError;

    /// <summary>
    /// Whether closing undoes this process's host set-up (detaching a pre-existing tap from its bridge). A live upgrade
    /// shares the tap between two VMMs: the source gives this up once the destination runs the VM, and the destination
    /// takes it only then (until then a failure hands the VM back to the source, whose bridge port must stay).
    /// </summary>
    public bool OwnsHostSetup { get; set; } = true;

    /// <summary>The open tap, for a live upgrade to pass to the new VMM (SCM_RIGHTS).</summary>
    internal System.Runtime.InteropServices.SafeHandle Handle => _tap;

    private TapDevice(TapHandle tap, string name, string? bridge, bool created)
    {
        _tap = tap;
        Name = name;
        _bridge = bridge;
        _created = created;
        _poller = new OneShotPoller(tap);
        _thread = EngineThreads.Start(ThreadRole.TapReceive, $"kvmps-net-{name}", Run);
    }

    /// <summary>Opens or creates tap <paramref name="name"/>; errors are <see cref="TapSetupException"/>s that say why.</summary>
    public static TapDevice Open(string name, string? bridge, int? mtu)
    {
        if (bridge is not null)
        {
            if (!TapHandle.InterfaceExists(bridge)) throw new TapSetupException($"bridge '{bridge}' does not exist (create it first: ip link add {bridge} type bridge).");
            if (!TapHandle.IsBridge(bridge)) throw new TapSetupException($"'{bridge}' is not a bridge.");
        }
        bool existed = TapHandle.InterfaceExists(name);
        var tap = TapHandle.TryOpen(name, out int errno, out string call);
        if (tap is null)
        {
            string why = errno switch
            {
                Libc.ENOENT when call.StartsWith("open") => "/dev/net/tun does not exist (no tun driver: modprobe tun)",
                Libc.EPERM or Libc.EACCES when !existed => "it does not exist and cannot be created without CAP_NET_ADMIN (create it first: ip tuntap add NAME mode tap user USER)",
                Libc.EPERM or Libc.EACCES => "permission denied (the tap belongs to another user or group, or /dev/net/tun is not accessible)",
                Tun.EBUSY => "it is in use by another process",
                Tun.EINVAL => "it exists but is not a tap interface (a tun, or another kind of device)",
                _ => $"{call} failed: {Libc.ErrorText(errno)} (errno {errno})",
            };
            throw new TapSetupException($"tap '{name}': {why}.");
        }
        try
        {
            tap.SetVnetHeaderSize(VnetHeaderSize);
            tap.SetOffload(0); // we offer no checksum/GSO features: the kernel hands us complete frames
            string actual = tap.InterfaceName;
            if (mtu is int m && TapHandle.SetMtu(actual, m) is int me and not 0)
                throw new TapSetupException($"tap '{actual}': cannot set MTU {m}: {Libc.ErrorText(me)}.");
            if (TapHandle.BringUp(actual) is int ue and not 0)
                throw new TapSetupException($"tap '{actual}': cannot bring the link up: {Libc.ErrorText(ue)}{(ue == Libc.EPERM ? " (needs CAP_NET_ADMIN, or bring it up beforehand)" : "")}.");
            if (bridge is not null && TapHandle.BridgePort(bridge, actual, add: true) is int be and not 0)
                throw new TapSetupException($"tap '{actual}': cannot attach it to bridge '{bridge}': {Libc.ErrorText(be)}{(be == Libc.EPERM ? " (needs CAP_NET_ADMIN)" : "")}.");
            return new TapDevice(tap, actual, bridge, created: !existed);
        }
        catch (NativeCallException e)
        {
            tap.Dispose();
            throw new TapSetupException($"tap '{name}': {e.Message}.");
        }
        catch
        {
            tap.Dispose();
            throw;
        }
    }

    /// <summary>
    /// <paramref name="fd"/> as a tap attached with a virtio-net header (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR) to the
    /// interface <paramref name="name"/> names (a template such as "tap%d" takes what the kernel made), with its flags;
    /// else <see cref="TapSetupException"/> saying what <paramref name="what"/> is instead (the handle closed).
    /// </summary>
    private static TapHandle AttachedTap(System.Runtime.InteropServices.SafeHandle fd, string name, string what, out short flags)
    {
        var tap = TapHandle.FromDescriptor(fd, out flags, out int errno)
            ?? throw new TapSetupException($"tap '{name}': {what} is not an attached tap (TUNGETIFF: {Libc.ErrorText(errno)}).");
        const short wanted = Tun.IFF_TAP | Tun.IFF_NO_PI | Tun.IFF_VNET_HDR;
        string? wrong = (flags & wanted) != wanted
            ? $"tap '{tap.InterfaceName}': {what} is not a tap with a virtio-net header (flags 0x{flags:x4})."
            : tap.InterfaceName != name && !name.Contains('%')
                ? $"tap '{name}': {what} is attached to '{tap.InterfaceName}', another interface."
                : null;
        if (wrong is null) return tap;
        tap.Dispose();
        throw new TapSetupException(wrong);
    }

    /// <summary>
    /// A live upgrade's destination: the tap the running VMM opened, passed over the migration socket. It must be a tap
    /// attached as <see cref="Open"/> attaches one (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR: its header size and offloads were
    /// set on the interface) and be the interface <paramref name="name"/> names; the interface is used as it is, up and
    /// in its bridge. The handle is the device's from here (closed on failure). Not the owner of the host set-up until
    /// the VM runs here (<see cref="OwnsHostSetup"/>).
    /// </summary>
    public static TapDevice Adopt(System.Runtime.InteropServices.SafeHandle received, string name, string? bridge)
    {
        var tap = AttachedTap(received, name, "the descriptor handed over", out short flags);
        try
        {
            // IFF_PERSIST: made beforehand (ip tuntap add), not by a VMM; one without it goes away with its last descriptor.
            return new TapDevice(tap, tap.InterfaceName, bridge, created: (flags & Tun.IFF_PERSIST) == 0) { OwnsHostSetup = false };
        }
        catch
        {
            tap.Dispose();
            throw;
        }
    }

    /// <summary>
    /// A tap opened by someone with the rights a jailed VMM lacks (CAP_NET_ADMIN): management, for a <c>device.add</c>
    /// (docs/vmm.md, "Passing open files"), or this VMM before a guest reboot. It must be a tap attached with a virtio-net
    /// header and be the interface <paramref name="name"/> names; the link, MTU and bridge are as the opener left them.
    /// The header size and offloads are set here (no capability needed). The handle is the device's (closed on failure),
    /// and so is the host set-up: a pre-existing tap leaves <paramref name="bridge"/> when the device goes.
    /// </summary>
    public static TapDevice FromPassed(System.Runtime.InteropServices.SafeHandle passed, string name, string? bridge)
    {
        var tap = AttachedTap(passed, name, "the file passed for it", out short flags);
        try
        {
            tap.SetVnetHeaderSize(VnetHeaderSize);
            tap.SetOffload(0);
            return new TapDevice(tap, tap.InterfaceName, bridge, created: (flags & Tun.IFF_PERSIST) == 0);
        }
        catch (NativeCallException e)
        {
            tap.Dispose();
            throw new TapSetupException($"tap '{name}': {e.Message}.");
        }
        catch
        {
            tap.Dispose();
            throw;
        }
    }

    public bool Send(ReadOnlySpan<byte> packet) => !_tap.IsClosed && _tap.Write(packet) == 0;

    public int Receive(Span<byte> buffer)
    {
        if (_tap.IsClosed || _rxError != 0) return 0;
        return ReceiveResult(_tap.Read(buffer));
    }

    /// <summary>
    /// Maps a read result (length, 0 for EAGAIN, or -errno; EINTR is retried below) to what <see cref="Receive"/>
    /// returns. A read error is persistent (the interface was deleted, the fd is broken): readiness would fire
    /// again at once and the device would spin, so receiving stops for good, with one log line.
    /// </summary>
    internal int ReceiveResult(int n)
    {
        if (n >= 0) return n;
        if (Interlocked.CompareExchange(ref _rxError, -n, 0) == 0)
            Log?.Invoke($"virtio-net: tap '{Name}': read failed: {Libc.ErrorText(-n)} (errno {-n}); receiving stopped");
        return 0;
    }

    public void ArmReceive() { if (!_stopping && _rxError == 0) _poller.Arm(); }

    private void Run()
    {
        try
        {
            while (!_stopping && _poller.Wait())
            {
                if (_stopping) break;
                ReceiveReady?.Invoke();
            }
        }
        catch (Exception) { } // the fd went away under us (disposal): nothing more to wait for
        finally { if (_stopping) Cleanup(); }
    }

    private int _cleaned;

    private void Cleanup()
    {
        if (Interlocked.Exchange(ref _cleaned, 1) != 0) return;
        // A tap we created disappears with its last fd (and leaves the bridge); a pre-existing one is detached again.
        // Not after a live upgrade handed it to another VMM, which runs the VM on it now.
        if (_bridge is not null && !_created && OwnsHostSetup) TapHandle.BridgePort(_bridge, Name, add: false);
        _poller.Dispose();
        _tap.Dispose();
    }

    /// <summary>
    /// Stops the thread and closes the tap. The thread may be waiting for the transport's lock (held by a caller
    /// disposing the device): then it is given a moment and finishes the clean-up itself when it gets there.
    /// </summary>
    public void Dispose()
    {
        if (_stopping) return;
        _stopping = true;
        _poller.Wake();
        if (Thread.CurrentThread == _thread || _thread.Join(TimeSpan.FromMilliseconds(500))) Cleanup();
    }
}
