using System.Runtime.InteropServices;
using KvmPS.Contract;
using KvmPS.Interop;
using KvmPS.Storage;

namespace KvmPS.Management.Vmm;

/// <summary>
/// What management opens for a running VMM and passes it with <c>device.add</c>, <c>media.change</c> and <c>migrate</c> (SCM_RIGHTS; docs/vmm.md "Passing open
/// files"), as libvirt does for QEMU: a jailed VMM is neither root nor able to see paths outside its private root, so a
/// disk image or ISO (root's, 0600, in a pool), a new tap (TUNSETIFF needs CAP_NET_ADMIN) or a vfio-user server's socket is
/// opened here. An unjailed VMM
/// takes the files the same way: one code path. The list is the caller's to dispose once the request is answered (the
/// VMM holds its own descriptors then).
/// </summary>
public static class VmmPassedFiles
{
    /// <summary>
    /// The image at <paramref name="spec"/>'s path and its backing chain, in chain order: each file's links resolved
    /// first (the allowed-path check judged the resolved path), then opened with <c>O_NOFOLLOW</c> relative to its
    /// folder's descriptor, so a link planted in its place since is refused. The top image is opened for writing unless
    /// the disk is read-only.
    /// </summary>
    /// <exception cref="PassedFileException">An image cannot be opened or read; names it and why.</exception>
    public static IReadOnlyList<SafeHandle> OpenDisk(BlockDeviceSpec spec)
    {
        var format = spec.Format switch
        {
            BlockImageFormat.Qcow2 => DiskImageFormat.Qcow2,
            BlockImageFormat.Raw => DiskImageFormat.Raw,
            _ => DiskImageFormat.Auto,
        };
        try
        {
            var files = DiskImageFactory.OpenChainFiles(spec.Path, format, spec.ReadOnly ?? false,
                (path, writable) => NoFollowFile.OpenExisting(ResolvedPath.Of(path), writable));
            if (files.Count > UnixFdPassing.MaxFds)
            {
                foreach (var f in files) f.Dispose();
                throw new PassedFileException(spec.Path, $"its backing chain has {files.Count} images; at most {UnixFdPassing.MaxFds} files can be passed to the VMM");
            }
            return [.. files];
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or DiskImageException or NativeCallException)
        {
            throw new PassedFileException(spec.Path, e.Message, e);
        }
    }

    /// <summary>
    /// The tap <paramref name="spec"/> names, opened (made if it does not exist) with a virtio-net header as kvmps-vmm
    /// opens one, its MTU set, brought up and put in its bridge: what needs CAP_NET_ADMIN is done here.
    /// </summary>
    /// <exception cref="PassedFileException">The tap or bridge cannot be set up; names it and why.</exception>
    public static IReadOnlyList<SafeHandle> OpenTap(NetDeviceSpec spec) => OpenTapHere(spec);

    /// <summary>
    /// <see cref="OpenTap(NetDeviceSpec)"/> in the network namespace of process <paramref name="vmmPid"/>: the VM's
    /// tap belongs where its VMM is (a VMM started inside <c>ip netns exec</c> by another management process). When
    /// that differs from this process's, a thread of its own enters it (setns moves only the calling thread) and makes
    /// the tap there; the open tap stays in that namespace after the thread ends.
    /// </summary>
    public static IReadOnlyList<SafeHandle> OpenTap(NetDeviceSpec spec, int vmmPid)
    {
        string theirs = $"/proc/{vmmPid}/ns/net";
        if (Libc.InodeOf(theirs) is not { } their || Libc.InodeOf("/proc/thread-self/ns/net") == their) return OpenTapHere(spec);
        IReadOnlyList<SafeHandle>? opened = null;
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                using var ns = File.OpenHandle(theirs, FileMode.Open, FileAccess.Read);
                if (Libc.Setns((int)ns.DangerousGetHandle(), Libc.CLONE_NEWNET) != 0)
                    throw new PassedFileException(spec.Tap, $"cannot enter the network namespace of kvmps-vmm (pid {vmmPid}): {Libc.ErrorText(Marshal.GetLastPInvokeError())}");
                opened = OpenTapHere(spec);
            }
            catch (Exception e) { failure = e; }
        }) { Name = "tap-in-vmm-netns", IsBackground = true };
        thread.Start();
        thread.Join();
        if (failure is PassedFileException) throw failure;
        if (failure is IOException or UnauthorizedAccessException) throw new PassedFileException(spec.Tap, $"the network namespace of kvmps-vmm (pid {vmmPid}): {failure.Message}", failure);
        if (failure is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure);
        return opened!;
    }

    private static IReadOnlyList<SafeHandle> OpenTapHere(NetDeviceSpec spec)
    {
        string name = spec.Tap;
        if (spec.Bridge is { } bridge)
        {
            if (!TapHandle.InterfaceExists(bridge)) throw new PassedFileException(name, $"bridge '{bridge}' does not exist");
            if (!TapHandle.IsBridge(bridge)) throw new PassedFileException(name, $"'{bridge}' is not a bridge");
        }
        bool existed = TapHandle.InterfaceExists(name);
        var tap = TapHandle.TryOpen(name, out int errno, out string call)
            ?? throw new PassedFileException(name, errno is Libc.EPERM or Libc.EACCES && !existed
                ? "it does not exist and cannot be created without CAP_NET_ADMIN"
                : $"{call} failed: {Libc.ErrorText(errno)} (errno {errno})");
        try
        {
            tap.SetVnetHeaderSize(12); // virtio_net_hdr with num_buffers, as kvmps-vmm's TapDevice uses
            tap.SetOffload(0);
            string actual = tap.InterfaceName;
            if (spec.Mtu is int mtu && TapHandle.SetMtu(actual, mtu) is int me and not 0)
                throw new PassedFileException(actual, $"cannot set MTU {mtu}: {Libc.ErrorText(me)}");
            if (TapHandle.BringUp(actual) is int ue and not 0)
                throw new PassedFileException(actual, $"cannot bring the link up: {Libc.ErrorText(ue)}");
            if (spec.Bridge is { } b && TapHandle.BridgePort(b, actual, add: true) is int be and not 0)
                throw new PassedFileException(actual, $"cannot attach it to bridge '{b}': {Libc.ErrorText(be)}");
            return [tap];
        }
        catch (NativeCallException e)
        {
            tap.Dispose();
            throw new PassedFileException(name, e.Message, e);
        }
        catch
        {
            tap.Dispose();
            throw;
        }
    }

    /// <summary>
    /// A connection to the vfio-user server at <paramref name="socketPath"/>, connected here: a jailed VMM may neither
    /// see the path nor connect to a socket only root may use. The VMM takes the connection and negotiates on it; the
    /// path stays the device's name.
    /// </summary>
    /// <exception cref="PassedFileException">The socket cannot be connected; names it and why.</exception>
    public static IReadOnlyList<SafeHandle> ConnectVfioUser(string socketPath)
    {
        try
        {
            return [UnixStreamSockets.Connect(socketPath)];
        }
        catch (NativeCallException e)
        {
            throw new PassedFileException(socketPath, $"cannot connect: {Libc.ErrorText(e.Errno)}", e);
        }
    }

    /// <summary>
    /// A connection to the <c>kvmps-vmm --incoming unix:</c> listening at <paramref name="socketPath"/>, connected here
    /// for <c>migrate</c>: a jailed source VMM may neither see a path outside its jail nor connect to a socket only root
    /// may use. The VMM sends the migration stream on it; nothing is sent here.
    /// </summary>
    /// <exception cref="PassedFileException">The socket cannot be connected; names it and why.</exception>
    public static IReadOnlyList<SafeHandle> ConnectMigration(string socketPath)
    {
        try
        {
            return [UnixStreamSockets.Connect(socketPath)];
        }
        catch (NativeCallException e)
        {
            throw new PassedFileException(socketPath, $"cannot connect to the receiving VMM: {Libc.ErrorText(e.Errno)}", e);
        }
    }

    /// <summary>
    /// The ISO image at <paramref name="isoPath"/> for <c>media.change</c>, opened read-only: its links resolved first
    /// (the allowed-path check judged the resolved path), then opened with <c>O_NOFOLLOW</c> relative to its folder's
    /// descriptor, so a link planted in its place since is refused. The VMM checks it is an ISO 9660 image.
    /// </summary>
    /// <exception cref="PassedFileException">The image cannot be opened; names it and why.</exception>
    public static IReadOnlyList<SafeHandle> OpenIso(string isoPath)
    {
        try
        {
            return [NoFollowFile.OpenExisting(ResolvedPath.Of(isoPath), writable: false)];
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NativeCallException)
        {
            throw new PassedFileException(isoPath, e.Message, e);
        }
    }

    /// <summary>Closes this process's copies (the VMM holds its own once it answered).</summary>
    public static void Close(IReadOnlyList<SafeHandle> files)
    {
        foreach (var f in files) f.Dispose();
    }
}

/// <summary>Management could not open a file (an image, an ISO, a tap, a vfio-user socket) to pass to the VMM; names it and why.</summary>
public sealed class PassedFileException(string what, string reason, Exception? inner = null)
    : IOException($"'{what}' cannot be opened for the VMM: {reason}", inner)
{
    public string What { get; } = what;
    public string Reason { get; } = reason;
}
