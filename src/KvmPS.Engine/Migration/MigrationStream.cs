using System.Buffers.Binary;
using System.IO.Hashing;
using System.Net.Sockets;
using System.Text;

namespace KvmPS.Migration;

/// <summary>
/// A migration that cannot go on: a stream that is truncated, corrupt, of another format version or from another
/// machine, a connection that failed, or the peer's own error. The message says which.
/// </summary>
public sealed class MigrationException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>What a frame carries (docs/migration.md, "Frames").</summary>
public enum MigrationCommand : uint
{
    /// <summary>Source → destination, first: u32 identity length, the machine identity (UTF-8), the source's config.json (UTF-8).</summary>
    Config = 1,
    /// <summary>Destination → source: the machine is built and waits for memory.</summary>
    Ready = 2,
    /// <summary>Source → destination: u64 first page, u32 page count, then count × 4096 bytes.</summary>
    Pages = 3,
    /// <summary>Source → destination: runs of pages that are all zero now, each u64 first page, u32 page count.</summary>
    ZeroPages = 4,
    /// <summary>Source → destination: every state record, encoded as a snapshot's state.bin (its own CRC-64).</summary>
    State = 5,
    /// <summary>Source → destination: nothing follows; the destination restores the state and runs the VM.</summary>
    End = 6,
    /// <summary>Destination → source: the VM runs here now.</summary>
    Running = 7,
    /// <summary>Either way: UTF-8 text saying why the sender of the frame gives up.</summary>
    Error = 8,
    /// <summary>
    /// Source → destination over a Unix socket, instead of Pages (local live upgrade): u32 region count, per region u64
    /// guest address and u64 size; the regions' memfds travel with the frame's first byte (SCM_RIGHTS).
    /// </summary>
    MemoryFds = 9,
    /// <summary>
    /// Source → destination, right after Config, format version 2 only (include_storage): u32 disk count, per disk (the
    /// configured virtio-blk devices in slot order) u8 format (1 raw, 2 qcow2), u64 virtual size in bytes, u32 qcow2
    /// cluster size (0 for raw). The destination creates fresh images at its own configured paths before it builds.
    /// </summary>
    Disks = 10,
    /// <summary>Source → destination (version 2): u32 disk index, u64 byte offset, then the data (512-byte multiples, at most 1 MiB).</summary>
    DiskData = 11,
    /// <summary>Source → destination (version 2): u32 disk index, then runs of u64 byte offset, u64 length that read as zero now.</summary>
    DiskZero = 12,
    /// <summary>
    /// Source → destination, format versions 3 and 4 only (the device hand-over, Migration/DeviceHandover), once the VM is
    /// paused, one per device that holds a host resource, before State: u32 PCI slot, u32 descriptor count, per
    /// descriptor u16 length and the UTF-8 name it goes by; the descriptors travel with the frame's first byte
    /// (SCM_RIGHTS). Version 3: the configured virtio-blk disks (the top image's path first, then its backing chain, their
    /// OFD locks with them; a count of 0 over tcp: the source released the image, closed and unlocked). Version 4 adds each virtio-net's tap (its
    /// interface name) and each vsock device's listening socket (its path). Called DiskFds while it carried disks only.
    /// </summary>
    DeviceFds = 13,
}

/// <summary>One frame read from the stream.</summary>
public readonly record struct MigrationFrame(MigrationCommand Command, byte[] Payload, int Length)
{
    public ReadOnlySpan<byte> Data => Payload.AsSpan(0, Length);
    public string Text => Encoding.UTF8.GetString(Data);
}

/// <summary>
/// The migration stream (docs/migration.md): a 16-byte header (magic <c>KVMPSMIG</c>, u32 format version, u32 zero),
/// then frames: u32 command, u32 payload length, payload, u32 CRC-32 (IEEE) of the command, length and payload. All
/// integers little-endian. Every read is bounds-checked; a bad frame is a <see cref="MigrationException"/>.
/// </summary>
public sealed class MigrationStream : IDisposable
{
    public static ReadOnlySpan<byte> Magic => "KVMPSMIG"u8;
    public const uint FormatVersion = 1;
    /// <summary>
    /// The format of a migration that copies the disks (include_storage): version 1 plus the Disks, DiskData and
    /// DiskZero frames. A sender writes it only then, so a peer that speaks only version 1 still takes every other
    /// migration, and refuses this one by its header before anything is built.
    /// </summary>
    public const uint StorageFormatVersion = 2;
    /// <summary>
    /// A local live upgrade of a VM with disks: version 1 plus the DeviceFds frame (disks only); the destination builds its disks
    /// without opening them and takes the source's open files at the hand-over. Written only then, so an older
    /// destination refuses it by its header instead of failing on the source's disk locks.
    /// </summary>
    public const uint DiskHandoverFormatVersion = 3;
    /// <summary>
    /// A local live upgrade (Unix socket) of a VM with a tap or a vsock device: version 3, and the DeviceFds frames also
    /// carry the taps and the vsock listening sockets, which the destination builds without (binding or attaching would
    /// fail: the running VMM holds them). Written only then, so an older destination refuses it by its header.
    /// </summary>
    public const uint DeviceHandoverFormatVersion = 4;
    public const int HeaderBytes = 16;
    /// <summary>The largest payload a frame may claim: a hostile length never makes the reader allocate more.</summary>
    public const int MaxPayloadBytes = 16 << 20;
    /// <summary>Pages per <see cref="MigrationCommand.Pages"/> frame at most (1 MiB).</summary>
    public const int MaxPagesPerFrame = 256;
    public const int PageSize = 4096;
    private const int FrameHeaderBytes = 8, CrcBytes = 4;

    private readonly Stream _stream;
    private readonly Socket? _socket;
    private readonly object _writeLock = new();
    private byte[] _readBuffer = new byte[64 * 1024];
    private byte[] _writeBuffer = new byte[64 * 1024];

    /// <summary>Bytes written so far (header and frames).</summary>
    public long BytesWritten { get; private set; }

    public MigrationStream(Stream stream, Socket? socket = null)
    {
        _stream = stream;
        _socket = socket;
    }

    public static MigrationStream Over(Socket socket, int timeoutMs)
    {
        socket.SendTimeout = timeoutMs;
        socket.ReceiveTimeout = timeoutMs;
        return new MigrationStream(new NetworkStream(socket, ownsSocket: true), socket);
    }

    /// <summary>Changes how long a read may wait for the peer (e.g. while the destination restores the machine).</summary>
    public int ReceiveTimeoutMs { set { if (_socket is not null) _socket.ReceiveTimeout = value; } }

    public void WriteHeader(uint version = FormatVersion)
    {
        Span<byte> header = stackalloc byte[HeaderBytes];
        Magic.CopyTo(header);
        BinaryPrimitives.WriteUInt32LittleEndian(header[8..], version);
        BinaryPrimitives.WriteUInt32LittleEndian(header[12..], 0);
        Write(header);
    }

    /// <summary>Reads and checks the header: the magic, then the format version (1-4, docs/migration.md "The stream"); returns the version.</summary>
    public uint ReadHeader()
    {
        Span<byte> header = stackalloc byte[HeaderBytes];
        ReadExactly(header, "the stream header");
        if (!header[..8].SequenceEqual(Magic)) throw new MigrationException("not a KvmPS migration stream (no KVMPSMIG magic)");
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(header[8..]);
        if (version is not (FormatVersion or StorageFormatVersion or DiskHandoverFormatVersion or DeviceHandoverFormatVersion))
            throw new MigrationException($"migration stream format version {version} is not one this build speaks (versions {FormatVersion} to {DeviceHandoverFormatVersion}); use the same kvmps-vmm version on both sides");
        return version;
    }

    /// <summary>Writes one frame whose payload is the concatenation of <paramref name="first"/> and <paramref name="second"/>.</summary>
    public void WriteFrame(MigrationCommand command, ReadOnlySpan<byte> first, ReadOnlySpan<byte> second = default)
    {
        int length = first.Length + second.Length;
        if (length > MaxPayloadBytes) throw new ArgumentOutOfRangeException(nameof(first), $"a frame of {length} bytes exceeds {MaxPayloadBytes}");
        lock (_writeLock)
        {
            int total = FrameHeaderBytes + length + CrcBytes;
            if (_writeBuffer.Length < total) _writeBuffer = new byte[total];
            var frame = _writeBuffer.AsSpan(0, total);
            BinaryPrimitives.WriteUInt32LittleEndian(frame, (uint)command);
            BinaryPrimitives.WriteUInt32LittleEndian(frame[4..], (uint)length);
            first.CopyTo(frame[FrameHeaderBytes..]);
            second.CopyTo(frame[(FrameHeaderBytes + first.Length)..]);
            BinaryPrimitives.WriteUInt32LittleEndian(frame[(FrameHeaderBytes + length)..], Crc32.HashToUInt32(frame[..(FrameHeaderBytes + length)]));
            Write(frame);
        }
    }

    public void WriteText(MigrationCommand command, string text) => WriteFrame(command, Encoding.UTF8.GetBytes(text));

    /// <summary>True when descriptors can travel with frames (a Unix socket).</summary>
    public bool CanPassDescriptors => _socket is { AddressFamily: AddressFamily.Unix };

    /// <summary>Writes one frame with <paramref name="fds"/> attached to its first byte (SCM_RIGHTS; a Unix socket only).</summary>
    public void WriteFrameWithDescriptors(MigrationCommand command, ReadOnlySpan<byte> payload, IReadOnlyList<System.Runtime.InteropServices.SafeHandle> fds)
    {
        if (!CanPassDescriptors) throw new InvalidOperationException("descriptors travel only over a Unix socket");
        lock (_writeLock)
        {
            int total = FrameHeaderBytes + payload.Length + CrcBytes;
            var frame = new byte[total];
            BinaryPrimitives.WriteUInt32LittleEndian(frame, (uint)command);
            BinaryPrimitives.WriteUInt32LittleEndian(frame.AsSpan(4), (uint)payload.Length);
            payload.CopyTo(frame.AsSpan(FrameHeaderBytes));
            BinaryPrimitives.WriteUInt32LittleEndian(frame.AsSpan(FrameHeaderBytes + payload.Length), Crc32.HashToUInt32(frame.AsSpan(0, FrameHeaderBytes + payload.Length)));
            int sent;
            try { sent = Interop.UnixFdPassing.Send(_socket!, frame, fds); }
            catch (Exception e) when (e is IOException or ObjectDisposedException) { throw new MigrationException($"the connection failed while sending the {(command == MigrationCommand.DeviceFds ? "devices'" : "memory")} files: {e.Message}", e); }
            BytesWritten += sent;
            Write(frame.AsSpan(sent));
        }
    }

    /// <summary>
    /// As <see cref="ReadFrame()"/>, and descriptors that came with the frame (SCM_RIGHTS on a Unix socket) are added to
    /// <paramref name="fds"/>: the frame header is read with recvmsg, as the sender attaches them to its first byte.
    /// </summary>
    public MigrationFrame ReadFrame(List<Interop.MemfdHandle> fds)
    {
        if (!CanPassDescriptors) return ReadFrame();
        Span<byte> head = stackalloc byte[FrameHeaderBytes];
        int got;
        try { got = Interop.UnixFdPassing.Receive(_socket!, head, fds); }
        catch (Exception e) when (e is IOException or ObjectDisposedException) { throw new MigrationException($"the connection failed while reading a frame header: {e.Message}", e); }
        if (got <= 0) throw new MigrationException("the stream is truncated: it ended before a frame header (0 of 8 bytes)");
        _pendingHead = head[..got].ToArray();
        return ReadFrame();
    }

    private byte[]? _pendingHead;

    /// <summary>
    /// Reads the next frame. The payload buffer is reused by the next read (copy what must outlive it). Truncation,
    /// an unknown command, an oversized length or a CRC mismatch is a <see cref="MigrationException"/>.
    /// </summary>
    public MigrationFrame ReadFrame()
    {
        Span<byte> head = stackalloc byte[FrameHeaderBytes];
        int already = 0;
        if (_pendingHead is { } pending) { pending.CopyTo(head); already = pending.Length; _pendingHead = null; }
        ReadExactly(head[already..], "a frame header");
        uint command = BinaryPrimitives.ReadUInt32LittleEndian(head);
        uint length = BinaryPrimitives.ReadUInt32LittleEndian(head[4..]);
        if (command is < (uint)MigrationCommand.Config or > (uint)MigrationCommand.DeviceFds)
            throw new MigrationException($"the stream is corrupt: unknown frame command {command}");
        if (length > MaxPayloadBytes) throw new MigrationException($"the stream is corrupt: a {(MigrationCommand)command} frame claims {length} bytes (at most {MaxPayloadBytes})");
        int total = (int)length + CrcBytes;
        if (_readBuffer.Length < total) _readBuffer = new byte[Math.Max(total, _readBuffer.Length * 2)];
        ReadExactly(_readBuffer.AsSpan(0, total), $"a {(MigrationCommand)command} frame");
        var crc = new Crc32();
        crc.Append(head);
        crc.Append(_readBuffer.AsSpan(0, (int)length));
        uint stored = BinaryPrimitives.ReadUInt32LittleEndian(_readBuffer.AsSpan((int)length));
        if (crc.GetCurrentHashAsUInt32() != stored) throw new MigrationException($"the stream is corrupt: CRC-32 mismatch in a {(MigrationCommand)command} frame");
        return new MigrationFrame((MigrationCommand)command, _readBuffer, (int)length);
    }

    /// <summary>
    /// After a send failed: the peer's Error frame, when it sent one before it closed (a destination that refuses a
    /// frame closes at once, so the sender's next write fails; its reason says more than "connection reset").
    /// </summary>
    public string? TryReadPeerError(int timeoutMs)
    {
        try
        {
            ReceiveTimeoutMs = timeoutMs;
            for (int i = 0; i < 4; i++)
            {
                var frame = ReadFrame();
                if (frame.Command == MigrationCommand.Error) return frame.Text;
            }
        }
        catch (Exception e) when (e is MigrationException or IOException or ObjectDisposedException) { }
        return null;
    }

    /// <summary>Reads a frame that must be <paramref name="expected"/>; the peer's Error frame becomes an exception with its text.</summary>
    public MigrationFrame Expect(MigrationCommand expected, string peer)
    {
        var frame = ReadFrame();
        if (frame.Command == MigrationCommand.Error) throw new MigrationException($"the {peer} refused: {frame.Text}");
        if (frame.Command != expected) throw new MigrationException($"the stream is out of order: a {frame.Command} frame where {expected} was expected");
        return frame;
    }

    private void Write(ReadOnlySpan<byte> data)
    {
        try { _stream.Write(data); }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
            throw new MigrationException($"the connection failed while sending: {Describe(e)}", e);
        }
        BytesWritten += data.Length;
    }

    private void ReadExactly(Span<byte> buffer, string what)
    {
        int at = 0;
        while (at < buffer.Length)
        {
            int n;
            try { n = _stream.Read(buffer[at..]); }
            catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
            {
                throw new MigrationException($"the connection failed while reading {what}: {Describe(e)}", e);
            }
            if (n <= 0) throw new MigrationException($"the stream is truncated: it ended inside {what} ({at} of {buffer.Length} bytes)");
            at += n;
        }
    }

    private static string Describe(Exception e) => e.InnerException is SocketException s ? s.SocketErrorCode switch
    {
        SocketError.TimedOut or SocketError.WouldBlock => "the peer did not answer in time",
        SocketError.ConnectionReset => "the peer closed the connection (connection reset)",
        SocketError.Shutdown => "the connection was shut down",
        var c => c.ToString(),
    } : e is ObjectDisposedException ? "the connection was closed" : e.Message;

    /// <summary>Unblocks a read or write in progress on another thread (cancel).</summary>
    public void Abort()
    {
        try { _socket?.Shutdown(SocketShutdown.Both); } catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
    }

    public void Dispose() => _stream.Dispose();
}
