using System.Buffers.Binary;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using KvmPS.Interop;
using KvmPS.Vm;
using static KvmPS.Interop.Vfio;

namespace KvmPS.Devices.Passthrough;

/// <summary>The vfio-user commands (QEMU docs/interop/vfio-user.rst, "Commands").</summary>
public enum VfioUserCommand : ushort
{
    Version = 1, DmaMap = 2, DmaUnmap = 3, DeviceGetInfo = 4, DeviceGetRegionInfo = 5, DeviceGetRegionIoFds = 6,
    DeviceGetIrqInfo = 7, DeviceSetIrqs = 8, RegionRead = 9, RegionWrite = 10, DmaRead = 11, DmaWrite = 12, DeviceReset = 13,
}

/// <summary>
/// The client side of vfio-user over a Unix socket: one request at a time, answered in order, on the calling thread
/// (vCPU threads for BAR and config accesses: no thread of its own). Guest RAM is shared by memfd (DMA_MAP), so the
/// server never needs DMA_READ/DMA_WRITE; a server command that arrives anyway is answered with an error.
/// A reply that is malformed, oversized, late (<see cref="ReplyTimeoutMs"/>) or missing marks the transport failed:
/// the socket is closed and every later call fails at once with the same reason.
/// </summary>
public sealed class VfioUserClient : IPassthroughTransport
{
    public const ushort VersionMajor = 0, VersionMinor = 1;
    public const int HeaderBytes = 16;
    /// <summary>The largest data transfer this client offers and accepts (the spec's default max_data_xfer_size).</summary>
    public const int MaxDataTransferBytes = 1 << 20;
    /// <summary>The largest reply accepted: a data transfer plus its header and a region-info capability chain.</summary>
    public const int MaxReplyBytes = MaxDataTransferBytes + 4096;
    public const uint FlagReply = 1, FlagNoReply = 1 << 4, FlagError = 1 << 5;
    private const int ENOTSUP = 95;

    private readonly Socket _socket;
    private readonly object _lock = new();
    private ushort _nextId;
    private string? _failed;
    private int _serverMaxFds = 1;
    private int _serverMaxTransfer = MaxDataTransferBytes;
    private readonly List<MemfdHandle> _regionFds = [];
    /// <summary>The guest RAM ranges DMA_MAP gave the server (guest address, bytes), so a reboot can take them back.</summary>
    private readonly List<(ulong Address, ulong Size)> _dmaMapped = [];

    public string Name { get; }
    public string? Failed { get { lock (_lock) return _failed; } }
    /// <summary>How long a reply may take before the server counts as hung (and the transport as failed).</summary>
    public int ReplyTimeoutMs { get; }
    /// <summary>The capabilities JSON the server answered VERSION with ("" when it sent none).</summary>
    public string ServerCapabilities { get; private set; } = "";
    public ushort ServerMinor { get; private set; }

    private VfioUserClient(Socket socket, string name, int replyTimeoutMs)
    {
        _socket = socket;
        Name = name;
        ReplyTimeoutMs = replyTimeoutMs;
    }

    /// <summary>Connects to <paramref name="socketPath"/> and negotiates the version; errors name the socket.</summary>
    public static VfioUserClient Connect(string socketPath, int replyTimeoutMs = 5000)
    {
        string name = $"vfio-user socket {socketPath}";
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try { socket.Connect(new UnixDomainSocketEndPoint(socketPath)); }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new PassthroughException(name, $"cannot connect: {e.Message}", e);
        }
        return Attach(socket, name, replyTimeoutMs);
    }

    /// <summary>Takes a connected socket (one management passed; tests: one end of a socket pair) and negotiates the version.</summary>
    public static VfioUserClient Attach(Socket socket, string name, int replyTimeoutMs = 5000)
    {
        socket.ReceiveTimeout = replyTimeoutMs;
        socket.SendTimeout = replyTimeoutMs;
        var client = new VfioUserClient(socket, name, replyTimeoutMs);
        try { client.Negotiate(); }
        catch
        {
            client.Dispose();
            throw;
        }
        return client;
    }

    private void Negotiate()
    {
        var json = Encoding.UTF8.GetBytes($"{{\"capabilities\":{{\"max_msg_fds\":{UnixFdPassing.MaxFds},\"max_data_xfer_size\":{MaxDataTransferBytes}}}}}\0");
        var payload = new byte[4 + json.Length];
        BinaryPrimitives.WriteUInt16LittleEndian(payload, VersionMajor);
        BinaryPrimitives.WriteUInt16LittleEndian(payload.AsSpan(2), VersionMinor);
        json.CopyTo(payload, 4);
        var reply = Request(VfioUserCommand.Version, payload, []);
        if (reply.Length < 4) throw Fail($"the VERSION reply has {reply.Length} bytes of payload (at least 4)");
        ushort major = BinaryPrimitives.ReadUInt16LittleEndian(reply);
        ushort minor = BinaryPrimitives.ReadUInt16LittleEndian(reply.AsSpan(2));
        if (major != VersionMajor || minor > VersionMinor)
            throw Fail($"the server speaks vfio-user {major}.{minor}; this client speaks {VersionMajor}.{VersionMinor}");
        ServerMinor = minor;
        int end = Array.IndexOf(reply, (byte)0, 4);
        var text = Encoding.UTF8.GetString(reply, 4, (end < 0 ? reply.Length : end) - 4);
        ServerCapabilities = text;
        if (text.Length == 0) return;
        try
        {
            using var doc = JsonDocument.Parse(text);
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw Fail("the VERSION capabilities are not a JSON object");
            if (!doc.RootElement.TryGetProperty("capabilities", out var caps)) return;
            if (caps.TryGetProperty("max_msg_fds", out var fds) && fds.TryGetInt32(out int f)) _serverMaxFds = Math.Clamp(f, 1, UnixFdPassing.MaxFds);
            if (caps.TryGetProperty("max_data_xfer_size", out var x) && x.TryGetInt64(out long m)) _serverMaxTransfer = (int)Math.Clamp(m, 4, MaxDataTransferBytes);
        }
        catch (JsonException e) { throw Fail($"the VERSION capabilities are not valid JSON: {e.Message}"); }
    }

    public PassthroughDeviceInfo GetDeviceInfo()
    {
        var payload = new byte[16];
        BinaryPrimitives.WriteUInt32LittleEndian(payload, 16);
        var reply = Request(VfioUserCommand.DeviceGetInfo, payload, []);
        if (reply.Length < 16) throw Fail($"the DEVICE_GET_INFO reply has {reply.Length} bytes (16 expected)");
        uint regions = BinaryPrimitives.ReadUInt32LittleEndian(reply.AsSpan(8)), irqs = BinaryPrimitives.ReadUInt32LittleEndian(reply.AsSpan(12));
        if (regions > 64 || irqs > 64) throw Fail($"DEVICE_GET_INFO claims {regions} regions and {irqs} IRQ types (at most 64 each)");
        return new PassthroughDeviceInfo(BinaryPrimitives.ReadUInt32LittleEndian(reply.AsSpan(4)), (int)regions, (int)irqs);
    }

    public PassthroughRegion GetRegionInfo(int index)
    {
        uint argsz = 32 + 256;
        for (int attempt = 0; ; attempt++)
        {
            var payload = new byte[32];
            BinaryPrimitives.WriteUInt32LittleEndian(payload, argsz);
            BinaryPrimitives.WriteUInt32LittleEndian(payload.AsSpan(8), (uint)index);
            var fds = new List<MemfdHandle>();
            var reply = Request(VfioUserCommand.DeviceGetRegionInfo, payload, [], fds);
            try
            {
                if (reply.Length < 32) throw Fail($"the DEVICE_GET_REGION_INFO reply for region {index} has {reply.Length} bytes (at least 32)");
                uint needed = BinaryPrimitives.ReadUInt32LittleEndian(reply);
                if (needed > argsz && reply.Length < needed)
                {
                    if (attempt > 0 || needed > 65536) throw Fail($"region {index}'s info needs {needed} bytes (at most 65536)");
                    argsz = needed;
                    continue;
                }
                var region = VfioRegionInfo.Parse(reply, index, fds.Count > 0 ? fds[0] : null, Fail);
                if (region.MapFd is MemfdHandle kept) { lock (_lock) _regionFds.Add(kept); fds.Remove(kept); }
                return region;
            }
            finally { foreach (var fd in fds) fd.Dispose(); }
        }
    }

    public PassthroughIrqInfo GetIrqInfo(int index)
    {
        var payload = new byte[16];
        BinaryPrimitives.WriteUInt32LittleEndian(payload, 16);
        BinaryPrimitives.WriteUInt32LittleEndian(payload.AsSpan(8), (uint)index);
        var reply = Request(VfioUserCommand.DeviceGetIrqInfo, payload, []);
        if (reply.Length < 16) throw Fail($"the DEVICE_GET_IRQ_INFO reply for IRQ {index} has {reply.Length} bytes (16 expected)");
        uint count = BinaryPrimitives.ReadUInt32LittleEndian(reply.AsSpan(12));
        if (count > 2048) throw Fail($"IRQ index {index} claims {count} vectors (at most 2048)");
        return new PassthroughIrqInfo(index, BinaryPrimitives.ReadUInt32LittleEndian(reply.AsSpan(4)), (int)count);
    }

    public void RegionRead(int region, ulong offset, Span<byte> data)
    {
        for (int done = 0; done < data.Length;)
        {
            int count = Math.Min(data.Length - done, _serverMaxTransfer);
            var payload = RegionAccess(region, offset + (ulong)done, count, 0);
            var reply = Request(VfioUserCommand.RegionRead, payload, []);
            if (reply.Length != 16 + count || BinaryPrimitives.ReadUInt32LittleEndian(reply.AsSpan(12)) != (uint)count)
                throw Fail($"the REGION_READ reply (region {region}, offset 0x{offset + (ulong)done:x}) has {reply.Length - 16} data bytes, {count} were asked for");
            reply.AsSpan(16, count).CopyTo(data[done..]);
            done += count;
        }
    }

    public void RegionWrite(int region, ulong offset, ReadOnlySpan<byte> data)
    {
        for (int done = 0; done < data.Length;)
        {
            int count = Math.Min(data.Length - done, _serverMaxTransfer);
            var payload = RegionAccess(region, offset + (ulong)done, count, count);
            data.Slice(done, count).CopyTo(payload.AsSpan(16));
            var reply = Request(VfioUserCommand.RegionWrite, payload, []);
            if (reply.Length < 16 || BinaryPrimitives.ReadUInt32LittleEndian(reply.AsSpan(12)) != (uint)count)
                throw Fail($"the REGION_WRITE reply (region {region}, offset 0x{offset + (ulong)done:x}) is malformed");
            done += count;
        }
    }

    private static byte[] RegionAccess(int region, ulong offset, int count, int dataBytes)
    {
        var payload = new byte[16 + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(payload, offset);
        BinaryPrimitives.WriteUInt32LittleEndian(payload.AsSpan(8), (uint)region);
        BinaryPrimitives.WriteUInt32LittleEndian(payload.AsSpan(12), (uint)count);
        return payload;
    }

    public void SetIrqEventFds(int irqIndex, IReadOnlyList<EventFdHandle> fds)
    {
        if (fds.Count == 0)
        {
            SendSetIrqs(irqIndex, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 0, []);
            return;
        }
        // A message carries at most as many descriptors as the server said it takes (max_msg_fds, default 1).
        for (int start = 0; start < fds.Count; start += _serverMaxFds)
        {
            int count = Math.Min(_serverMaxFds, fds.Count - start);
            SendSetIrqs(irqIndex, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, start, count, fds.Skip(start).Take(count).ToArray());
        }
    }

    public void SetIrqUnmaskEventFd(int irqIndex, EventFdHandle fd) =>
        SendSetIrqs(irqIndex, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_UNMASK, 0, 1, [fd]);

    private void SendSetIrqs(int index, uint flags, int start, int count, IReadOnlyList<SafeHandle> fds)
    {
        var payload = new byte[20];
        BinaryPrimitives.WriteUInt32LittleEndian(payload, 20);
        BinaryPrimitives.WriteUInt32LittleEndian(payload.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt32LittleEndian(payload.AsSpan(8), (uint)index);
        BinaryPrimitives.WriteUInt32LittleEndian(payload.AsSpan(12), (uint)start);
        BinaryPrimitives.WriteUInt32LittleEndian(payload.AsSpan(16), (uint)count);
        Request(VfioUserCommand.DeviceSetIrqs, payload, fds);
    }

    public void Reset() => Request(VfioUserCommand.DeviceReset, [], []);

    public void MapGuestMemory(GuestMemory memory)
    {
        var files = memory.SharedMemoryFiles
            ?? throw new PassthroughException(Name, "guest RAM is not in memfds, so the server cannot map it for DMA (give the VM --memory-backing memfd=on, or let the VMM choose it)");
        for (int i = 0; i < memory.Regions.Count; i++)
        {
            var region = memory.Regions[i];
            var payload = new byte[32];
            BinaryPrimitives.WriteUInt32LittleEndian(payload, 32);
            BinaryPrimitives.WriteUInt32LittleEndian(payload.AsSpan(4), VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE);
            BinaryPrimitives.WriteUInt64LittleEndian(payload.AsSpan(8), 0); // the region starts at the memfd's first byte
            BinaryPrimitives.WriteUInt64LittleEndian(payload.AsSpan(16), region.GuestAddress);
            BinaryPrimitives.WriteUInt64LittleEndian(payload.AsSpan(24), region.SizeBytes);
            Request(VfioUserCommand.DmaMap, payload, [files[i]]);
            lock (_lock) _dmaMapped.Add((region.GuestAddress, region.SizeBytes));
        }
    }

    /// <summary>Takes every range <see cref="MapGuestMemory"/> gave the server out of its DMA space (DMA_UNMAP, one per range).</summary>
    public void UnmapGuestMemory()
    {
        (ulong Address, ulong Size)[] mapped;
        lock (_lock) mapped = [.. _dmaMapped];
        foreach (var (address, size) in mapped)
        {
            var payload = new byte[24];
            BinaryPrimitives.WriteUInt32LittleEndian(payload, 24);
            BinaryPrimitives.WriteUInt32LittleEndian(payload.AsSpan(4), 0); // no dirty bitmap
            BinaryPrimitives.WriteUInt64LittleEndian(payload.AsSpan(8), address);
            BinaryPrimitives.WriteUInt64LittleEndian(payload.AsSpan(16), size);
            Request(VfioUserCommand.DmaUnmap, payload, []);
            lock (_lock) _dmaMapped.Remove((address, size));
        }
    }

    /// <summary>
    /// A guest reboot keeps this connection instead of connecting again by path, which a jailed VMM may not
    /// (docs/confinement.md, "The jail"): resets the device when it can (VFIO_USER_DEVICE_RESET: its DMA stops, its
    /// interrupt eventfds go), takes the previous boot's guest RAM out of its DMA space (that memory is freed; the next
    /// boot's is mapped by the next function) and closes the region fds the previous boot's BAR mappings used. Call
    /// after the previous boot's function is disposed. Returns whether the device was reset. Errors as any request.
    /// </summary>
    public bool PrepareForNextBoot()
    {
        bool reset = GetDeviceInfo().CanReset;
        if (reset) Reset();
        UnmapGuestMemory();
        lock (_lock)
        {
            foreach (var fd in _regionFds) fd.Dispose();
            _regionFds.Clear();
        }
        return reset;
    }

    /// <summary>Sends one command and waits for its reply; returns the reply's payload. An error reply throws (the transport stays usable).</summary>
    private byte[] Request(VfioUserCommand command, ReadOnlySpan<byte> payload, IReadOnlyList<SafeHandle> fds, List<MemfdHandle>? replyFds = null)
    {
        lock (_lock)
        {
            if (_failed is not null) throw new PassthroughException(Name, $"the device is unusable: {_failed}");
            ushort id = _nextId++;
            var message = new byte[HeaderBytes + payload.Length];
            BinaryPrimitives.WriteUInt16LittleEndian(message, id);
            BinaryPrimitives.WriteUInt16LittleEndian(message.AsSpan(2), (ushort)command);
            BinaryPrimitives.WriteUInt32LittleEndian(message.AsSpan(4), (uint)message.Length);
            payload.CopyTo(message.AsSpan(HeaderBytes));
            try { Vfio.SendMessage(_socket, message, fds); }
            catch (Exception e) when (e is IOException or ObjectDisposedException or SocketException) { throw FailLocked($"sending {command} failed: {e.Message}"); }
            // A server command (DMA_READ/WRITE without twin-socket mode) may come before our reply: refuse it and read on.
            for (int skipped = 0; ; skipped++)
            {
                var fdsIn = replyFds ?? [];
                var (header, body) = ReadMessage(command, fdsIn);
                if (replyFds is null) foreach (var fd in fdsIn) fd.Dispose();
                uint flags = BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(8));
                ushort replyId = BinaryPrimitives.ReadUInt16LittleEndian(header);
                ushort replyCommand = BinaryPrimitives.ReadUInt16LittleEndian(header.AsSpan(2));
                if ((flags & 0xF) != FlagReply)
                {
                    if (skipped >= 16) throw FailLocked($"the server sent commands instead of the {command} reply");
                    RefuseServerCommand(replyId, replyCommand, flags);
                    continue;
                }
                if (replyId != id || replyCommand != (ushort)command)
                    throw FailLocked($"a reply to message {replyId} (command {replyCommand}) came where the {command} reply (message {id}) was expected");
                if ((flags & FlagError) != 0)
                {
                    int errno = (int)BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(12));
                    throw new PassthroughException(Name, $"the server refused {command}: {(errno == 0 ? "error" : Libc.ErrorText(errno))} (errno {errno})");
                }
                return body;
            }
        }
    }

    private (byte[] Header, byte[] Body) ReadMessage(VfioUserCommand waitingFor, List<MemfdHandle> fds)
    {
        var header = new byte[HeaderBytes];
        try
        {
            if (!Vfio.ReceiveExactly(_socket, header, fds)) throw FailLocked($"the server closed the connection (waiting for the {waitingFor} reply)");
            uint size = BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(4));
            if (size < HeaderBytes || size > MaxReplyBytes)
                throw FailLocked($"the {waitingFor} reply claims {size} bytes (between {HeaderBytes} and {MaxReplyBytes})");
            var body = new byte[size - HeaderBytes];
            if (body.Length > 0 && !Vfio.ReceiveExactly(_socket, body, fds))
                throw FailLocked($"the server closed the connection in the middle of the {waitingFor} reply");
            return (header, body);
        }
        catch (NativeCallException e) when (e.Errno == Libc.EAGAIN) { throw FailLocked($"no {waitingFor} reply within {ReplyTimeoutMs} ms"); }
        catch (Exception e) when (e is (IOException or ObjectDisposedException or SocketException) and not PassthroughException)
        {
            throw FailLocked($"reading the {waitingFor} reply failed: {e.Message}");
        }
    }

    private void RefuseServerCommand(ushort id, ushort command, uint flags)
    {
        if ((flags & FlagNoReply) != 0) return;
        var reply = new byte[HeaderBytes];
        BinaryPrimitives.WriteUInt16LittleEndian(reply, id);
        BinaryPrimitives.WriteUInt16LittleEndian(reply.AsSpan(2), command);
        BinaryPrimitives.WriteUInt32LittleEndian(reply.AsSpan(4), HeaderBytes);
        BinaryPrimitives.WriteUInt32LittleEndian(reply.AsSpan(8), FlagReply | FlagError);
        BinaryPrimitives.WriteUInt32LittleEndian(reply.AsSpan(12), ENOTSUP);
        try { Vfio.SendMessage(_socket, reply, []); }
        catch (Exception e) when (e is IOException or ObjectDisposedException or SocketException) { throw FailLocked($"answering a server command failed: {e.Message}"); }
    }

    private PassthroughException Fail(string reason)
    {
        lock (_lock) return FailLocked(reason);
    }

    /// <summary>Marks the transport failed (the first reason wins), closes the socket, and returns the exception to throw.</summary>
    private PassthroughException FailLocked(string reason)
    {
        _failed ??= reason;
        try { _socket.Dispose(); } catch (ObjectDisposedException) { }
        return new PassthroughException(Name, reason);
    }

    public void Dispose()
    {
        lock (_lock)
        {
            _failed ??= "the device was closed";
            _socket.Dispose();
            foreach (var fd in _regionFds) fd.Dispose();
            _regionFds.Clear();
        }
    }
}
