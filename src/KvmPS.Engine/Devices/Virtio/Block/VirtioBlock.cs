using System.Buffers.Binary;
using System.Text;
using KvmPS.State;
using KvmPS.Storage;

namespace KvmPS.Devices.Virtio.Block;

/// <summary>
/// virtio block device (type 2, virtio 1.x section 5.2) on an <see cref="IBlockBackend"/> (raw or qcow2 image).
/// One request queue. Each request is a descriptor chain: a 16-byte device-readable header (type, reserved,
/// sector), the data (device-readable for OUT, device-writable for IN and GET_ID, 16-byte segments for DISCARD
/// and WRITE_ZEROES) and a device-writable status byte, the chain's last byte. Chain framing is free (a header may
/// share a buffer with data, data may span buffers); a chain too short for the header or without a writable last
/// buffer is a driver error: the device goes DEVICE_NEEDS_RESET through <see cref="IVirtioContext.Fail"/>.
/// </summary>
/// <remarks>
/// Requests run synchronously on the thread that calls <see cref="ProcessQueue"/> (the I/O thread with
/// ioeventfds, else the notifying vCPU), under the transport's lock. Data moves directly between guest-memory
/// spans and the backend: no copies and no allocations per request. Requests the device refuses (bad range,
/// read-only, unknown flags) never reach the backend.
/// </remarks>
public sealed class VirtioBlock : IVirtioDevice, IPersistent
{
    public const ushort QueueSize = 256;
    public const int SectorSize = 512;
    public const int IdBytes = 20; // VIRTIO_BLK_ID_BYTES

    // Feature bits (5.2.3).
    public const ulong FeatureSegMax = 1UL << 2, FeatureRo = 1UL << 5, FeatureBlkSize = 1UL << 6, FeatureFlush = 1UL << 9,
        FeatureDiscard = 1UL << 13, FeatureWriteZeroes = 1UL << 14;

    // Request types and status values (5.2.6).
    public const uint TypeIn = 0, TypeOut = 1, TypeFlush = 4, TypeGetId = 8, TypeDiscard = 11, TypeWriteZeroes = 13;
    public const byte StatusOk = 0, StatusIoErr = 1, StatusUnsupp = 2;
    public const uint WriteZeroesFlagUnmap = 1;

    /// <summary>Sectors one DISCARD or WRITE_ZEROES segment may cover (max_discard_sectors, max_write_zeroes_sectors): 2 GiB.</summary>
    public const uint MaxDiscardSectors = 1u << 22;
    /// <summary>Segments per DISCARD or WRITE_ZEROES request (max_discard_seg, max_write_zeroes_seg).</summary>
    public const uint MaxSegments = 1;
    /// <summary>Bytes of device configuration: struct virtio_blk_config up to and including the secure-erase fields.</summary>
    public const int ConfigBytes = 72;
    private const int MaxLoggedErrors = 20;

    private IBlockBackend _backend; // replaced once, by AdoptBackend, before any vCPU runs
    private readonly DescriptorChain _chain = new();
    private readonly byte[] _config = new byte[ConfigBytes];
    private readonly byte[] _id = new byte[IdBytes];
    private readonly bool _discard;
    private int _loggedErrors;

    /// <param name="backend">The disk; the device owns it and disposes it.</param>
    /// <param name="serial">Up to 20 bytes of printable ASCII returned by GET_ID ("" for none).</param>
    /// <param name="discard">Offer DISCARD (and let WRITE_ZEROES unmap).</param>
    public VirtioBlock(IBlockBackend backend, string serial = "", bool discard = true)
    {
        ArgumentNullException.ThrowIfNull(backend);
        if (serial.Any(c => c < 0x20 || c > 0x7e)) throw new ArgumentException($"The serial '{serial}' may contain printable ASCII characters only.", nameof(serial));
        if (serial.Length > IdBytes) throw new ArgumentException($"The serial '{serial}' is longer than {IdBytes} bytes.", nameof(serial));
        _backend = backend;
        _discard = discard && !backend.ReadOnly;
        Serial = serial;
        Encoding.ASCII.GetBytes(serial, _id);

        var c = _config.AsSpan();
        BinaryPrimitives.WriteUInt64LittleEndian(c[0..], Capacity);     // capacity (512-byte sectors)
        BinaryPrimitives.WriteUInt32LittleEndian(c[12..], SegMax);      // seg_max
        BinaryPrimitives.WriteUInt32LittleEndian(c[20..], SectorSize);  // blk_size
        BinaryPrimitives.WriteUInt16LittleEndian(c[34..], 1);           // num_queues
        if (_discard)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(c[36..], MaxDiscardSectors); // max_discard_sectors
            BinaryPrimitives.WriteUInt32LittleEndian(c[40..], MaxSegments);       // max_discard_seg
            BinaryPrimitives.WriteUInt32LittleEndian(c[44..], 1);                 // discard_sector_alignment
        }
        BinaryPrimitives.WriteUInt32LittleEndian(c[48..], MaxDiscardSectors);     // max_write_zeroes_sectors
        BinaryPrimitives.WriteUInt32LittleEndian(c[52..], MaxSegments);           // max_write_zeroes_seg
        c[56] = (byte)(_discard ? 1 : 0);                                         // write_zeroes_may_unmap
    }

    public string Name => "virtio-blk";
    public ushort DeviceType => 2;
    public uint PciClassCode => 0x010000; // mass storage, SCSI (as QEMU presents virtio-blk)
    public int QueueCount => 1;
    public ushort MaxQueueSize(int queue) => QueueSize;
    /// <summary>Segments (data buffers) per request the driver may use: the queue size less header and status.</summary>
    public static uint SegMax => QueueSize - 2;

    public ulong DeviceFeatures => FeatureSegMax | FeatureBlkSize | FeatureFlush | FeatureWriteZeroes
        | (_discard ? FeatureDiscard : 0) | (_backend.ReadOnly ? FeatureRo : 0);

    public int ConfigSize => ConfigBytes;
    public IBlockBackend Backend => _backend;

    /// <summary>
    /// The open image for internal snapshots (snapshot.create takes them on it while the VM is paused, when no
    /// request is in flight), or a <see cref="DiskSnapshotsNotSupportedException"/> naming the disk (raw images).
    /// </summary>
    public ISnapshotableBlockBackend SnapshotableBackend() => _backend.RequireSnapshots();
    public string Serial { get; }
    public bool ReadOnly => _backend.ReadOnly;
    /// <summary>Disk size in 512-byte sectors (a partial last sector is not exposed).</summary>
    public ulong Capacity => _backend.SizeBytes / SectorSize;

    /// <summary>
    /// While a storage migration copies this disk: every write, write-zeroes and discard marks its blocks here after it
    /// reached the backend (null otherwise: nothing is recorded).
    /// </summary>
    public DiskDirtyMap? DirtyMap { get => Volatile.Read(ref _dirtyMap); set => Volatile.Write(ref _dirtyMap, value); }
    private DiskDirtyMap? _dirtyMap;

    public ulong Requests { get; private set; }
    public ulong BytesRead { get; private set; }
    public ulong BytesWritten { get; private set; }
    /// <summary>Requests completed with IOERR or UNSUPP.</summary>
    public ulong FailedRequests { get; private set; }

    public void ReadConfig(int offset, Span<byte> data)
    {
        data.Clear();
        if (offset < 0 || offset >= ConfigBytes) return;
        int n = Math.Min(data.Length, ConfigBytes - offset);
        _config.AsSpan(offset, n).CopyTo(data);
    }

    /// <summary>Nothing is driver-writable (writeback needs VIRTIO_BLK_F_CONFIG_WCE, not offered).</summary>
    public void WriteConfig(int offset, ReadOnlySpan<byte> data) { }

    public void Activate(IVirtioContext context) { }
    public void Reset() { }

    public void ProcessQueue(IVirtioContext context, int queue)
    {
        if (queue != 0 || context.Queue(0) is not { } q) return;
        // A bad chain (no room for header and status) fails the device: it needs a reset.
        if (q.DrainAvailable(_chain, (Device: this, Context: context),
                static (s, chain) => s.Device.TryHandle(s.Context, chain, out uint written) ? written : null))
            context.NotifyUsed(0);
    }

    /// <summary>Runs one request; false (after <see cref="IVirtioContext.Fail"/>) when the chain has no room for the header and status.</summary>
    private bool TryHandle(IVirtioContext context, DescriptorChain chain, out uint written)
    {
        written = 0;
        var buffers = chain.Buffers;
        if (chain.ReadableBytes < 16)
        {
            context.Fail($"request {chain.Head}: {chain.ReadableBytes} device-readable bytes, less than the 16-byte request header");
            return false;
        }
        if (buffers.Count == 0 || buffers[^1] is not { DeviceWritable: true, Length: > 0 } last)
        {
            context.Fail($"request {chain.Head}: the chain does not end in a device-writable status byte");
            return false;
        }
        var memory = context.Memory;
        Span<byte> header = stackalloc byte[16];
        if (chain.ReadFrom(memory, 0, header) != 16 || !memory.TryGetWritableSpan(last.Address + last.Length - 1, 1, out var status))
        {
            context.Fail($"request {chain.Head}: header or status byte not in guest RAM");
            return false;
        }
        uint type = BinaryPrimitives.ReadUInt32LittleEndian(header);
        ulong sector = BinaryPrimitives.ReadUInt64LittleEndian(header[8..]);
        ulong readData = chain.ReadableBytes - 16;   // bytes after the header
        ulong writeData = chain.WritableBytes - 1;   // bytes before the status byte
        ulong features = context.NegotiatedFeatures;

        byte result = type switch
        {
            TypeIn => In(context, chain, sector, writeData),
            TypeOut => Out(context, chain, sector, readData),
            TypeFlush => Flush(context),
            TypeGetId => GetId(context, chain, writeData),
            TypeDiscard when (features & FeatureDiscard) != 0 => DiscardOrZero(context, chain, readData, zero: false),
            TypeWriteZeroes when (features & FeatureWriteZeroes) != 0 => DiscardOrZero(context, chain, readData, zero: true),
            _ => StatusUnsupp,
        };
        status[0] = result;
        Requests++;
        if (result != StatusOk) FailedRequests++;
        written = (uint)chain.WritableBytes;
        return true;
    }

    /// <summary>Byte offset of a sector range when it lies inside the disk; false for out-of-range or overflowing requests.</summary>
    private bool InRange(ulong sector, ulong bytes, out ulong offset)
    {
        ulong size = Capacity * SectorSize;
        offset = 0;
        if (sector > size / SectorSize) return false;
        offset = sector * SectorSize;
        return bytes <= size - offset;
    }

    private byte In(IVirtioContext context, DescriptorChain chain, ulong sector, ulong length)
    {
        if (length % SectorSize != 0 || !InRange(sector, length, out ulong offset)) return StatusIoErr;
        ulong done = 0;
        try
        {
            foreach (var b in chain.Buffers)
            {
                if (!b.DeviceWritable || b.Length == 0) continue;
                if (done >= length) break;
                int n = (int)Math.Min(b.Length, length - done);
                if (!context.Memory.TryGetWritableSpan(b.Address, n, out var span)) return StatusIoErr; // the disk's data lands in guest RAM
                _backend.Read(offset + done, span);
                done += (ulong)n;
            }
        }
        catch (Exception e) when (IsIoError(e)) { return IoError(context, "read", offset + done, e); }
        BytesRead += done;
        return StatusOk;
    }

    private byte Out(IVirtioContext context, DescriptorChain chain, ulong sector, ulong length)
    {
        if (_backend.ReadOnly || length % SectorSize != 0 || !InRange(sector, length, out ulong offset)) return StatusIoErr;
        ulong skip = 16, done = 0;
        try
        {
            foreach (var b in chain.Buffers)
            {
                if (b.DeviceWritable) break;
                if (skip >= b.Length) { skip -= b.Length; continue; }
                int n = (int)(b.Length - skip);
                if (!context.Memory.TryGetReadOnlySpan(b.Address + skip, n, out var span)) return StatusIoErr;
                _backend.Write(offset + done, span);
                done += (ulong)n;
                skip = 0;
            }
        }
        catch (Exception e) when (IsIoError(e))
        {
            DirtyMap?.Mark(offset, length); // a failed write may have changed any part of its range
            return IoError(context, "write", offset + done, e);
        }
        DirtyMap?.Mark(offset, done);
        BytesWritten += done;
        return StatusOk;
    }

    private byte Flush(IVirtioContext context)
    {
        if (_backend.ReadOnly) return StatusOk;
        try { _backend.Flush(); }
        catch (Exception e) when (IsIoError(e)) { return IoError(context, "flush", 0, e); }
        return StatusOk;
    }

    private byte GetId(IVirtioContext context, DescriptorChain chain, ulong length)
    {
        // The id is 20 bytes, NUL-padded (not terminated when all 20 are used); a shorter buffer gets a prefix.
        int n = (int)Math.Min(length, IdBytes);
        chain.WriteTo(context.Memory, 0, _id.AsSpan(0, n));
        return StatusOk;
    }

    private byte DiscardOrZero(IVirtioContext context, DescriptorChain chain, ulong length, bool zero)
    {
        if (length == 0 || length % 16 != 0) return StatusUnsupp;
        if (length / 16 > MaxSegments) return StatusUnsupp;
        Span<byte> segment = stackalloc byte[16];
        if (chain.ReadFrom(context.Memory, 16, segment) != 16) return StatusIoErr;
        ulong sector = BinaryPrimitives.ReadUInt64LittleEndian(segment);
        uint count = BinaryPrimitives.ReadUInt32LittleEndian(segment[8..]);
        uint flags = BinaryPrimitives.ReadUInt32LittleEndian(segment[12..]);
        // DISCARD takes no flags; WRITE_ZEROES knows only UNMAP. Other flags are unsupported (5.2.6.2).
        if ((flags & ~(zero ? WriteZeroesFlagUnmap : 0u)) != 0) return StatusUnsupp;
        ulong bytes = (ulong)count * SectorSize;
        if (_backend.ReadOnly || count > MaxDiscardSectors || !InRange(sector, bytes, out ulong offset)) return StatusIoErr;
        try
        {
            if (zero) _backend.WriteZeroes(offset, bytes, mayUnmap: _discard && (flags & WriteZeroesFlagUnmap) != 0);
            else _backend.Discard(offset, bytes);
        }
        catch (Exception e) when (IsIoError(e))
        {
            DirtyMap?.Mark(offset, bytes);
            return IoError(context, zero ? "write-zeroes" : "discard", offset, e);
        }
        // A discarded range may read as zeroes afterwards: the copy must follow it as any write.
        DirtyMap?.Mark(offset, bytes);
        return StatusOk;
    }

    /// <summary>Host-side failures that become VIRTIO_BLK_S_IOERR: the image file, the disk, the format layer.</summary>
    private static bool IsIoError(Exception e) => e is IOException or DiskImageException or UnauthorizedAccessException or ArgumentException or InvalidOperationException;

    private byte IoError(IVirtioContext context, string what, ulong offset, Exception e)
    {
        if (_loggedErrors < MaxLoggedErrors)
        {
            _loggedErrors++;
            string more = _loggedErrors == MaxLoggedErrors ? " (further I/O errors are not logged)" : "";
            context.Log($"{_backend.Path}: {what} at byte {offset} failed: {e.Message}{more}");
        }
        return StatusIoErr;
    }

    // ---- state ----
    public string StateName => Name;
    public ushort StateVersion => VirtioBlockState.Version;

    public VirtioBlockState CaptureState() => new(Capacity, ReadOnly, Serial, _discard, Requests, BytesRead, BytesWritten, FailedRequests);
    public void SaveState(StateWriter writer) => CaptureState().Write(writer);

    public void RestoreState(StateReader reader, ushort version)
    {
        var s = VirtioBlockState.Read(reader, version);
        if (s.CapacitySectors != Capacity || s.ReadOnly != ReadOnly || s.Serial != Serial || s.Discard != _discard)
            throw reader.Fail($"{_backend.Path}: the snapshot's disk had {s.CapacitySectors} sectors (read-only {s.ReadOnly}, serial '{s.Serial}', discard {s.Discard}), this one {Capacity} (read-only {ReadOnly}, serial '{Serial}', discard {_discard})");
        (Requests, BytesRead, BytesWritten, FailedRequests) = (s.Requests, s.BytesRead, s.BytesWritten, s.FailedRequests);
    }

    public void Dispose() => _backend.Dispose();

    /// <summary>True while the device waits for its image to be handed over (a live upgrade's destination).</summary>
    public bool AwaitsBackend => _backend is PendingBlockBackend;

    /// <summary>
    /// A migration without descriptor passing (tcp: shared storage), paused at the hand-over: makes every write durable
    /// and closes the image, and drops its locks, so the destination can open and lock it. The device keeps a
    /// placeholder of the same size until the image is adopted again (the migration failed) or the VM ends here. The
    /// placeholder keeps the chain's files open, unlocked (<see cref="ReleasedFiles"/>): a source whose destination
    /// refused locks and uses them again, where opening the paths again could fail (a jailed VMM's user may not).
    /// </summary>
    public void ReleaseBackend()
    {
        var old = _backend;
        if (old is PendingBlockBackend) return;
        if (!old.ReadOnly) old.Flush();
        var kept = new List<(string Path, Microsoft.Win32.SafeHandles.SafeFileHandle File)>();
        try
        {
            // Second descriptors of the same open files: the image objects (and their caches) go, the files stay.
            foreach (var (path, file) in DiskImageFactory.OpenFiles(old)) kept.Add((path, Interop.PassedDescriptors.Duplicate(file)));
        }
        catch
        {
            foreach (var k in kept) k.File.Dispose();
            throw;
        }
        _backend = new PendingBlockBackend(old.Path, old.SizeBytes, old.ReadOnly, kept.Select(k => k.File).ToList());
        old.Dispose();
        // The locks belong to the open file description, which the kept descriptors hold: dropped explicitly.
        foreach (var (path, file) in kept) DiskImageFactory.ReleaseLocks(path, file);
    }

    /// <summary>The image chain's files a <see cref="ReleaseBackend"/> kept (top image first), or null: none is held.</summary>
    public IReadOnlyList<Microsoft.Win32.SafeHandles.SafeFileHandle>? ReleasedFiles => (_backend as PendingBlockBackend)?.ReleasedFiles;

    /// <summary>The destination took the image over for good: the files <see cref="ReleaseBackend"/> kept are closed.</summary>
    public void CloseReleasedFiles()
    {
        if (_backend is not PendingBlockBackend { ReleasedFiles: not null } pending) return;
        _backend = new PendingBlockBackend(pending.Path, pending.SizeBytes, pending.ReadOnly);
        pending.Dispose();
    }

    /// <summary>
    /// A live upgrade's destination: the image handed over by the running VMM replaces the placeholder the device was
    /// built with (before any vCPU runs, so no request saw the placeholder); on a source, the image opened again on the
    /// released files. Its size and read-only flag must be the ones the device was built for (the config space already
    /// says them). The placeholder is disposed (the released files it kept closed: the new image has its own).
    /// </summary>
    public void AdoptBackend(IBlockBackend backend)
    {
        if (_backend is not PendingBlockBackend pending) throw new InvalidOperationException($"the disk '{_backend.Path}' already has its image");
        if (backend.SizeBytes != pending.SizeBytes || backend.ReadOnly != pending.ReadOnly)
            throw new InvalidOperationException($"the disk image '{pending.Path}' handed over is {backend.SizeBytes} bytes (read-only {backend.ReadOnly}), " +
                $"the device was built for {pending.SizeBytes} bytes (read-only {pending.ReadOnly})");
        _backend = backend;
        pending.Dispose();
    }
}
