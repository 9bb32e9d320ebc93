using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace KvmPS.VfioUserTestDevice;

/// <summary>Fault knobs for the bad-input tests of the client (Program.cs lists the options).</summary>
internal sealed record Faults(bool BadVersion, bool OversizedReply, bool MalformedReply, int CrashAfterMessages);

/// <summary>
/// Serves one client connection: every command gets a reply (an error reply for anything malformed, never an
/// exception out of here); a framing error ends the connection, since the stream cannot be resynchronised.
/// </summary>
internal sealed class Server(TestDevice device, Faults faults, TextWriter log)
{
    private const uint DEVICE_FLAGS_RESET = 1, DEVICE_FLAGS_PCI = 2;
    private const uint REGION_READ = 1, REGION_WRITE = 2, REGION_MMAP = 4, REGION_CAPS = 8;
    private const ushort CAP_SPARSE_MMAP = 1;
    private const uint IRQ_EVENTFD = 1, IRQ_MASKABLE = 2, IRQ_NORESIZE = 8;
    private const uint SET_DATA_NONE = 1, SET_DATA_BOOL = 2, SET_DATA_EVENTFD = 4, SET_ACTION_MASK = 8,
        SET_ACTION_UNMASK = 16, SET_ACTION_TRIGGER = 32;
    private const uint IRQ_AUTOMASKED = 4;
    private const int IrqIndexIntx = 0, IrqIndexMsi = 1, IrqIndexMsix = 2, IrqIndexCount = 5;
    private const uint DMA_READ = 1, DMA_WRITE = 2, DMA_UNMAP_ALL = 2;

    private bool _negotiated;
    private int _messages;

    /// <summary>Handles messages until the client disconnects or breaks the framing.</summary>
    public void Run(Connection connection)
    {
        while (true)
        {
            Message? message;
            try { message = connection.Receive(); }
            catch (FramingException e) { log.WriteLine($"vfio-user-test-device: closing: {e.Message}"); return; }
            if (message is null) { log.WriteLine("vfio-user-test-device: client closed the connection"); return; }
            _messages++;
            if (faults.CrashAfterMessages > 0 && _messages > faults.CrashAfterMessages)
            {
                log.WriteLine($"vfio-user-test-device: --crash-after {faults.CrashAfterMessages}: exiting at message {_messages} (command {message.Command})");
                Environment.Exit(3);
            }
            try
            {
                if (!message.IsCommand) { log.WriteLine($"vfio-user-test-device: ignoring a non-command message (flags 0x{message.Flags:x})"); continue; }
                Handle(connection, message);
            }
            catch (IOException e) { log.WriteLine($"vfio-user-test-device: closing: {e.Message}"); return; }
            catch (Exception e)
            {
                // A bug here must not take the device down with it: answer EIO and go on.
                log.WriteLine($"vfio-user-test-device: command {message.Command} failed: {e}");
                TryReply(connection, message, [], VfioUser.EIO);
            }
            finally
            {
                Connection.CloseAll(message.Fds);
                device.Irqs.PollIntxUnmask(); // after the message (an IRQ_ACK lowers the line first): an EOI since re-arms INTx
            }
        }
    }

    private void TryReply(Connection connection, Message message, ReadOnlySpan<byte> payload, int errno)
    {
        if ((message.Flags & VfioUser.FLAG_NO_REPLY) != 0) return;
        try { connection.Reply(message, payload, errno); } catch (IOException) { }
    }

    private void Handle(Connection c, Message m)
    {
        if (!_negotiated && m.Command != VfioUser.VERSION) { TryReply(c, m, [], VfioUser.EINVAL); return; }
        switch (m.Command)
        {
            case VfioUser.VERSION: Version(c, m); break;
            case VfioUser.DMA_MAP: DmaMap(c, m); break;
            case VfioUser.DMA_UNMAP: DmaUnmap(c, m); break;
            case VfioUser.DEVICE_GET_INFO: DeviceInfo(c, m); break;
            case VfioUser.DEVICE_GET_REGION_INFO: RegionInfo(c, m); break;
            case VfioUser.DEVICE_GET_IRQ_INFO: IrqInfo(c, m); break;
            case VfioUser.DEVICE_SET_IRQS: SetIrqs(c, m); break;
            case VfioUser.REGION_READ: RegionRead(c, m); break;
            case VfioUser.REGION_WRITE: RegionWrite(c, m); break;
            case VfioUser.DEVICE_RESET:
                device.Reset();
                device.Irqs.DisableAll();
                TryReply(c, m, [], 0);
                break;
            default: TryReply(c, m, [], VfioUser.ENOSYS); break;
        }
    }

    private void Version(Connection c, Message m)
    {
        var p = m.Payload;
        if (p.Length < 4) { TryReply(c, m, [], VfioUser.EINVAL); return; }
        ushort major = BinaryPrimitives.ReadUInt16LittleEndian(p);
        if (major != VfioUser.MajorVersion) { TryReply(c, m, [], VfioUser.EINVAL); return; }
        if (p.Length > 4)
        {
            // The capabilities are a NUL-terminated JSON object; anything else is malformed.
            int end = Array.IndexOf(p, (byte)0, 4);
            if (end < 0) { TryReply(c, m, [], VfioUser.EINVAL); return; }
            try { using var doc = JsonDocument.Parse(p.AsMemory(4, end - 4)); if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new JsonException("not an object"); }
            catch (JsonException) { TryReply(c, m, [], VfioUser.EINVAL); return; }
        }
        string json = $"{{\"capabilities\":{{\"max_msg_fds\":{VfioUser.MaxFds},\"max_data_xfer_size\":{VfioUser.MaxDataTransferBytes},\"pgsizes\":4096}}}}";
        byte[] text = Encoding.UTF8.GetBytes(json);
        var reply = new byte[4 + text.Length + 1];
        BinaryPrimitives.WriteUInt16LittleEndian(reply, faults.BadVersion ? (ushort)9 : VfioUser.MajorVersion);
        BinaryPrimitives.WriteUInt16LittleEndian(reply.AsSpan(2), faults.BadVersion ? (ushort)9 : VfioUser.MinorVersion);
        text.CopyTo(reply, 4);
        _negotiated = true;
        TryReply(c, m, reply, 0);
    }

    private void DmaMap(Connection c, Message m)
    {
        var p = m.Payload;
        if (p.Length < 32 || BinaryPrimitives.ReadUInt32LittleEndian(p) < 32 || m.Fds.Count > 1) { TryReply(c, m, [], VfioUser.EINVAL); return; }
        uint flags = BinaryPrimitives.ReadUInt32LittleEndian(p.AsSpan(4));
        ulong offset = BinaryPrimitives.ReadUInt64LittleEndian(p.AsSpan(8));
        ulong address = BinaryPrimitives.ReadUInt64LittleEndian(p.AsSpan(16));
        ulong size = BinaryPrimitives.ReadUInt64LittleEndian(p.AsSpan(24));
        int fd = m.Fds.Count == 1 ? m.Fds[0] : -1;
        int errno = (flags & ~(DMA_READ | DMA_WRITE)) != 0 ? VfioUser.EINVAL : device.Dma.Map(address, size, offset, fd, (flags & DMA_WRITE) != 0);
        TryReply(c, m, [], errno);
    }

    private void DmaUnmap(Connection c, Message m)
    {
        var p = m.Payload;
        if (p.Length < 24 || BinaryPrimitives.ReadUInt32LittleEndian(p) < 24) { TryReply(c, m, [], VfioUser.EINVAL); return; }
        uint flags = BinaryPrimitives.ReadUInt32LittleEndian(p.AsSpan(4));
        ulong address = BinaryPrimitives.ReadUInt64LittleEndian(p.AsSpan(8));
        ulong size = BinaryPrimitives.ReadUInt64LittleEndian(p.AsSpan(16));
        int errno;
        if (flags == DMA_UNMAP_ALL) { device.Dma.UnmapAll(); errno = 0; }
        else if (flags != 0) errno = VfioUser.EINVAL; // no dirty-page tracking here
        else errno = device.Dma.Unmap(address, size);
        TryReply(c, m, errno == 0 ? p.AsSpan(0, 24) : [], errno);
    }

    private void DeviceInfo(Connection c, Message m)
    {
        if (m.Payload.Length < 4 || BinaryPrimitives.ReadUInt32LittleEndian(m.Payload) < 16) { TryReply(c, m, [], VfioUser.EINVAL); return; }
        var reply = new byte[16];
        BinaryPrimitives.WriteUInt32LittleEndian(reply, 16);
        BinaryPrimitives.WriteUInt32LittleEndian(reply.AsSpan(4), DEVICE_FLAGS_RESET | DEVICE_FLAGS_PCI);
        BinaryPrimitives.WriteUInt32LittleEndian(reply.AsSpan(8), TestDevice.RegionCount);
        BinaryPrimitives.WriteUInt32LittleEndian(reply.AsSpan(12), IrqIndexCount);
        if (faults.MalformedReply) { TryReply(c, m, reply.AsSpan(0, 4), 0); return; }
        if (faults.OversizedReply) { c.Reply(m, reply, 0, claimedSize: 64u << 20); return; }
        TryReply(c, m, reply, 0);
    }

    private void RegionInfo(Connection c, Message m)
    {
        var p = m.Payload;
        if (p.Length < 32) { TryReply(c, m, [], VfioUser.EINVAL); return; }
        uint argsz = BinaryPrimitives.ReadUInt32LittleEndian(p);
        uint index = BinaryPrimitives.ReadUInt32LittleEndian(p.AsSpan(8));
        if (argsz < 32 || index >= TestDevice.RegionCount) { TryReply(c, m, [], VfioUser.EINVAL); return; }
        bool mmap = index == TestDevice.RegionBar2;
        ulong size = index == TestDevice.RegionConfig ? (ulong)device.ConfigBytes : TestDevice.RegionSize((int)index);
        uint needed = mmap ? 64u : 32u; // BAR2 adds a sparse-mmap capability: header 8 + count 8 + one area 16
        bool withCaps = mmap && argsz >= needed;
        var reply = new byte[withCaps ? needed : 32];
        BinaryPrimitives.WriteUInt32LittleEndian(reply, needed);
        uint flags = size == 0 ? 0 : REGION_READ | REGION_WRITE | (mmap ? REGION_MMAP | REGION_CAPS : 0);
        BinaryPrimitives.WriteUInt32LittleEndian(reply.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt32LittleEndian(reply.AsSpan(8), index);
        BinaryPrimitives.WriteUInt32LittleEndian(reply.AsSpan(12), withCaps ? 32u : 0u);
        BinaryPrimitives.WriteUInt64LittleEndian(reply.AsSpan(16), size);
        BinaryPrimitives.WriteUInt64LittleEndian(reply.AsSpan(24), 0); // offset into the fd to mmap
        if (withCaps)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(reply.AsSpan(32), CAP_SPARSE_MMAP);
            BinaryPrimitives.WriteUInt16LittleEndian(reply.AsSpan(34), 1); // version
            BinaryPrimitives.WriteUInt32LittleEndian(reply.AsSpan(36), 0); // next: none
            BinaryPrimitives.WriteUInt32LittleEndian(reply.AsSpan(40), 1); // nr_areas
            BinaryPrimitives.WriteUInt64LittleEndian(reply.AsSpan(48), 0);
            BinaryPrimitives.WriteUInt64LittleEndian(reply.AsSpan(56), TestDevice.Bar2Bytes);
        }
        if ((m.Flags & VfioUser.FLAG_NO_REPLY) == 0) c.Reply(m, reply, 0, mmap ? device.Bar2Fd : -1);
    }

    private void IrqInfo(Connection c, Message m)
    {
        var p = m.Payload;
        if (p.Length < 16 || BinaryPrimitives.ReadUInt32LittleEndian(p) < 16) { TryReply(c, m, [], VfioUser.EINVAL); return; }
        uint index = BinaryPrimitives.ReadUInt32LittleEndian(p.AsSpan(8));
        if (index >= IrqIndexCount) { TryReply(c, m, [], VfioUser.EINVAL); return; }
        var reply = new byte[16];
        BinaryPrimitives.WriteUInt32LittleEndian(reply, 16);
        var vectors = VectorsOf(index);
        bool intx = index == IrqIndexIntx && device.Intx;
        uint flags = vectors is not null ? IRQ_EVENTFD | IRQ_MASKABLE | IRQ_NORESIZE : intx ? IRQ_EVENTFD | IRQ_MASKABLE | IRQ_AUTOMASKED : 0;
        BinaryPrimitives.WriteUInt32LittleEndian(reply.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt32LittleEndian(reply.AsSpan(8), index);
        BinaryPrimitives.WriteUInt32LittleEndian(reply.AsSpan(12), vectors is not null ? (uint)vectors.Vectors : intx ? 1u : 0);
        TryReply(c, m, reply, 0);
    }

    private void SetIrqs(Connection c, Message m)
    {
        var p = m.Payload;
        if (p.Length < 20 || BinaryPrimitives.ReadUInt32LittleEndian(p) < 20) { TryReply(c, m, [], VfioUser.EINVAL); return; }
        uint flags = BinaryPrimitives.ReadUInt32LittleEndian(p.AsSpan(4));
        uint index = BinaryPrimitives.ReadUInt32LittleEndian(p.AsSpan(8));
        uint start = BinaryPrimitives.ReadUInt32LittleEndian(p.AsSpan(12));
        uint count = BinaryPrimitives.ReadUInt32LittleEndian(p.AsSpan(16));
        uint data = flags & (SET_DATA_NONE | SET_DATA_BOOL | SET_DATA_EVENTFD);
        uint action = flags & (SET_ACTION_MASK | SET_ACTION_UNMASK | SET_ACTION_TRIGGER);
        bool oneEach = data != 0 && (data & (data - 1)) == 0 && action != 0 && (action & (action - 1)) == 0;
        if (!oneEach || flags != (data | action) || index >= IrqIndexCount) { TryReply(c, m, [], VfioUser.EINVAL); return; }
        if (index == IrqIndexIntx && device.Intx) { SetIntx(c, m, data, action, start, count); return; }
        if (VectorsOf(index) is not { } irqs)
        {
            // Nothing else exists; disabling an absent index is harmless, anything else is not.
            TryReply(c, m, [], count == 0 && data == SET_DATA_NONE ? 0 : VfioUser.EINVAL);
            return;
        }
        if (count == 0)
        {
            if (data == SET_DATA_NONE && action == SET_ACTION_TRIGGER) irqs.Disable();
            TryReply(c, m, [], data == SET_DATA_NONE ? 0 : VfioUser.EINVAL);
            return;
        }
        if (start >= irqs.Vectors || count > irqs.Vectors - start) { TryReply(c, m, [], VfioUser.EINVAL); return; }
        if (data == SET_DATA_EVENTFD)
        {
            if (action != SET_ACTION_TRIGGER || m.Fds.Count != count) { TryReply(c, m, [], VfioUser.EINVAL); return; }
            for (int i = 0; i < count; i++) irqs.SetEventFd((int)(start + i), m.Fds[i]);
            m.Fds.Clear(); // now owned by the vectors
        }
        else
        {
            if (data == SET_DATA_BOOL && p.Length < 20 + count) { TryReply(c, m, [], VfioUser.EINVAL); return; }
            for (int i = 0; i < count; i++)
            {
                if (data == SET_DATA_BOOL && p[20 + i] == 0) continue;
                int v = (int)(start + i);
                if (action == SET_ACTION_TRIGGER) irqs.Trigger(v);
                else irqs.Mask(v, action == SET_ACTION_MASK);
            }
        }
        TryReply(c, m, [], 0);
    }

    /// <summary>The vectors of a message-signalled index (MSI or MSI-X), or null.</summary>
    private EventFdVectors? VectorsOf(uint index) => index switch
    {
        IrqIndexMsix => device.Irqs.Msix,
        IrqIndexMsi => device.Irqs.Msi,
        _ => null,
    };

    /// <summary>INTx (index 0, one line): trigger and unmask eventfds, mask/unmask actions, or off (count 0).</summary>
    private void SetIntx(Connection c, Message m, uint data, uint action, uint start, uint count)
    {
        var irqs = device.Irqs;
        if (count == 0)
        {
            if (data == SET_DATA_NONE && action == SET_ACTION_TRIGGER) irqs.DisableIntx();
            TryReply(c, m, [], data == SET_DATA_NONE ? 0 : VfioUser.EINVAL);
            return;
        }
        if (start != 0 || count != 1) { TryReply(c, m, [], VfioUser.EINVAL); return; }
        if (data == SET_DATA_EVENTFD)
        {
            if (m.Fds.Count != 1 || action == SET_ACTION_MASK) { TryReply(c, m, [], VfioUser.EINVAL); return; }
            if (action == SET_ACTION_TRIGGER) irqs.SetIntxEventFd(m.Fds[0]);
            else irqs.SetIntxUnmaskEventFd(m.Fds[0]);
            m.Fds.Clear(); // now owned by INTx
        }
        else
        {
            if (action == SET_ACTION_TRIGGER || (data == SET_DATA_BOOL && m.Payload.Length < 21)) { TryReply(c, m, [], VfioUser.EINVAL); return; }
            if (data == SET_DATA_NONE || m.Payload[20] != 0) irqs.MaskIntx(action == SET_ACTION_MASK);
        }
        TryReply(c, m, [], 0);
    }

    private void RegionRead(Connection c, Message m)
    {
        var p = m.Payload;
        if (p.Length < 16) { TryReply(c, m, [], VfioUser.EINVAL); return; }
        ulong offset = BinaryPrimitives.ReadUInt64LittleEndian(p);
        uint region = BinaryPrimitives.ReadUInt32LittleEndian(p.AsSpan(8));
        uint count = BinaryPrimitives.ReadUInt32LittleEndian(p.AsSpan(12));
        if (region >= TestDevice.RegionCount || count > VfioUser.MaxDataTransferBytes || !device.IsValidAccess((int)region, offset, count))
        { TryReply(c, m, [], VfioUser.EINVAL); return; }
        var reply = new byte[16 + count];
        p.AsSpan(0, 16).CopyTo(reply);
        device.Read((int)region, offset, reply.AsSpan(16));
        TryReply(c, m, reply, 0);
    }

    private void RegionWrite(Connection c, Message m)
    {
        var p = m.Payload;
        if (p.Length < 16) { TryReply(c, m, [], VfioUser.EINVAL); return; }
        ulong offset = BinaryPrimitives.ReadUInt64LittleEndian(p);
        uint region = BinaryPrimitives.ReadUInt32LittleEndian(p.AsSpan(8));
        uint count = BinaryPrimitives.ReadUInt32LittleEndian(p.AsSpan(12));
        if (region >= TestDevice.RegionCount || p.Length - 16 != count || !device.IsValidAccess((int)region, offset, count))
        { TryReply(c, m, [], VfioUser.EINVAL); return; }
        device.Write((int)region, offset, p.AsSpan(16, (int)count));
        TryReply(c, m, p.AsSpan(0, 16), 0);
    }
}
