using System.Buffers.Binary;
using KvmPS.Devices.Virtio.Block;
using KvmPS.Storage;
using KvmPS.Storage.Qcow2;
using KvmPS.Vm;

namespace KvmPS.Migration;

/// <summary>
/// The source side of a migration with include_storage (docs/migration.md, "Copying the disks"): the configured
/// virtio-blk disks in slot order, each read through the backend the guest uses (raw or qcow2, backing chain
/// included: the guest-visible contents), with a <see cref="DiskDirtyMap"/> on each device from the start of the copy.
/// A block's bit is taken before the block is read, so a write that lands after its copy began marks it again.
/// </summary>
internal sealed class StorageCopySender
{
    /// <summary>Blocks read and sent together at most: 1 MiB, the largest DiskData frame.</summary>
    private const int BlocksPerFrame = 16;
    private readonly List<(VirtioBlock Device, DiskDirtyMap Map)> _disks;
    private readonly byte[] _buffer = new byte[BlocksPerFrame * DiskDirtyMap.BlockSize];
    private long _sentBytes;

    public StorageCopySender(VirtualMachine machine)
    {
        _disks = [.. Disks(machine).Select(d => (d, new DiskDirtyMap(d.Backend.SizeBytes)))];
        TotalBytes = _disks.Sum(d => (long)d.Device.Backend.SizeBytes);
    }

    /// <summary>The configured virtio-blk devices in slot order: the order both ends number the disks in.</summary>
    public static List<VirtioBlock> Disks(VirtualMachine machine) =>
        [.. machine.ConfiguredDevices.OrderBy(d => d.Slot).Select(d => d.Device).OfType<VirtioBlock>()];

    public int Count => _disks.Count;
    public long TotalBytes { get; }
    public long SentBytes => Interlocked.Read(ref _sentBytes);
    public long DirtyBytes => _disks.Sum(d => d.Map.Count) * DiskDirtyMap.BlockSize;

    /// <summary>The Disks frame's payload: per disk its format, virtual size and qcow2 cluster size.</summary>
    public byte[] Describe()
    {
        var payload = new byte[4 + _disks.Count * 13];
        BinaryPrimitives.WriteUInt32LittleEndian(payload, (uint)_disks.Count);
        for (int i = 0; i < _disks.Count; i++)
        {
            var backend = _disks[i].Device.Backend;
            var at = payload.AsSpan(4 + i * 13);
            at[0] = backend is Qcow2Image ? StorageCopyReceiver.FormatQcow2 : StorageCopyReceiver.FormatRaw;
            BinaryPrimitives.WriteUInt64LittleEndian(at[1..], backend.SizeBytes);
            BinaryPrimitives.WriteUInt32LittleEndian(at[9..], backend is Qcow2Image q ? (uint)q.ClusterSizeBytes : 0);
        }
        return payload;
    }

    /// <summary>From here on every guest write is recorded (the devices mark after the backend wrote).</summary>
    public void StartTracking() { foreach (var (device, map) in _disks) device.DirtyMap = map; }

    public void StopTracking() { foreach (var (device, _) in _disks) device.DirtyMap = null; }

    /// <summary>
    /// Round 0: every block of every disk, in order; blocks that read as zero are skipped (the destination's image is
    /// fresh and reads as zero). <paramref name="beforeRead"/> runs before each read (cancel, throttle),
    /// <paramref name="afterFrame"/> after each data frame (the bandwidth cap).
    /// </summary>
    public void SendAll(MigrationStream stream, Action beforeRead, Action afterFrame)
    {
        for (int i = 0; i < _disks.Count; i++)
            for (long b = 0; b < _disks[i].Map.Blocks; b += BlocksPerFrame)
            {
                beforeRead();
                SendBlocks(stream, i, b, (int)Math.Min(BlocksPerFrame, _disks[i].Map.Blocks - b), zeroRuns: null, afterFrame);
            }
    }

    /// <summary>Every block marked now: data, or a zero run when it reads as zero (it may have held data before).</summary>
    public void SendDirty(MigrationStream stream, Action beforeRead, Action afterFrame)
    {
        for (int i = 0; i < _disks.Count; i++)
        {
            var map = _disks[i].Map;
            var zeroRuns = new List<(ulong Offset, ulong Length)>();
            for (long b = map.NextMarked(0); b >= 0; b = map.NextMarked(b))
            {
                int n = 1;
                while (n < BlocksPerFrame && b + n < map.Blocks && map.NextMarked(b + n) == b + n) n++;
                beforeRead();
                SendBlocks(stream, i, b, n, zeroRuns, afterFrame);
                b += n;
                if (b >= map.Blocks) break;
                if (zeroRuns.Count >= 4096) FlushZeroRuns(stream, i, zeroRuns);
            }
            FlushZeroRuns(stream, i, zeroRuns);
        }
    }

    private void SendBlocks(MigrationStream stream, int disk, long first, int count, List<(ulong Offset, ulong Length)>? zeroRuns, Action afterFrame)
    {
        var (device, map) = _disks[disk];
        ulong offset = (ulong)first * DiskDirtyMap.BlockSize;
        int length = (int)Math.Min((ulong)count * DiskDirtyMap.BlockSize, map.SizeBytes - offset);
        // Take the bits first: a write landing from now on marks its block again and it goes in a later round.
        for (long b = first; b < first + count; b++) map.Take(b);
        var data = _buffer.AsSpan(0, length);
        device.Backend.Read(offset, data);
        Span<byte> head = stackalloc byte[12];
        int at = 0;
        while (at < length)
        {
            bool zero = IsZeroBlock(data, at);
            int end = Math.Min(length, at + DiskDirtyMap.BlockSize);
            while (end < length && IsZeroBlock(data, end) == zero) end = Math.Min(length, end + DiskDirtyMap.BlockSize);
            if (!zero)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(head, (uint)disk);
                BinaryPrimitives.WriteUInt64LittleEndian(head[4..], offset + (ulong)at);
                stream.WriteFrame(MigrationCommand.DiskData, head, data[at..end]);
                Interlocked.Add(ref _sentBytes, end - at);
                afterFrame();
            }
            else if (zeroRuns is not null)
            {
                ulong runOffset = offset + (ulong)at, runLength = (ulong)(end - at);
                if (zeroRuns.Count > 0 && zeroRuns[^1].Offset + zeroRuns[^1].Length == runOffset) zeroRuns[^1] = (zeroRuns[^1].Offset, zeroRuns[^1].Length + runLength);
                else zeroRuns.Add((runOffset, runLength));
            }
            at = end;
        }
    }

    private static bool IsZeroBlock(ReadOnlySpan<byte> data, int at) =>
        !data.Slice(at, Math.Min(DiskDirtyMap.BlockSize, data.Length - at)).ContainsAnyExcept((byte)0);

    private static void FlushZeroRuns(MigrationStream stream, int disk, List<(ulong Offset, ulong Length)> runs)
    {
        if (runs.Count == 0) return;
        var payload = new byte[4 + runs.Count * 16];
        BinaryPrimitives.WriteUInt32LittleEndian(payload, (uint)disk);
        for (int i = 0; i < runs.Count; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(payload.AsSpan(4 + i * 16), runs[i].Offset);
            BinaryPrimitives.WriteUInt64LittleEndian(payload.AsSpan(12 + i * 16), runs[i].Length);
        }
        stream.WriteFrame(MigrationCommand.DiskZero, payload);
        runs.Clear();
    }
}

/// <summary>
/// The destination side of include_storage: creates a fresh image (the source's format and virtual size; qcow2 with its
/// cluster size, raw sparse) at the path of each block device of its own configuration before the machine is built,
/// writes the DiskData and DiskZero frames into them through the devices' backends, and flushes them before the VM
/// runs. A failure removes every image it created.
/// </summary>
internal sealed class StorageCopyReceiver
{
    public const byte FormatRaw = 1, FormatQcow2 = 2;
    private readonly List<string> _created = [];
    private List<VirtioBlock>? _disks;

    public long BytesWritten { get; private set; }
    public int Count { get; private set; }

    /// <summary>Checks the Disks frame against this VMM's configuration and creates the images (none may exist).</summary>
    public void CreateImages(ReadOnlySpan<byte> payload, MachineConfig config)
    {
        var configured = config.Devices.OfType<BlockDeviceConfig>().ToList();
        if (payload.Length < 4) throw new MigrationException("the stream is corrupt: the Disks frame is too short");
        uint count = BinaryPrimitives.ReadUInt32LittleEndian(payload);
        if (payload.Length != 4 + (long)count * 13) throw new MigrationException($"the stream is corrupt: a Disks frame of {payload.Length} bytes for {count} disks");
        if (count != configured.Count)
            throw new MigrationException($"the source copies {count} disks, this VMM's configuration has {configured.Count} block devices");
        for (int i = 0; i < count; i++)
        {
            var at = payload[(4 + i * 13)..];
            byte format = at[0];
            ulong size = BinaryPrimitives.ReadUInt64LittleEndian(at[1..]);
            uint cluster = BinaryPrimitives.ReadUInt32LittleEndian(at[9..]);
            var disk = configured[i];
            if (format is not (FormatRaw or FormatQcow2)) throw new MigrationException($"the stream is corrupt: disk {i} has format {format}");
            if ((disk.Format, format) is (DiskImageFormat.Raw, FormatQcow2) or (DiskImageFormat.Qcow2, FormatRaw))
                throw new MigrationException($"disk {i} ({disk.Path}) is {(format == FormatRaw ? "raw" : "qcow2")} on the source but configured as {disk.Format} here");
            if (disk.ReadOnly) throw new MigrationException($"disk {i} ({disk.Path}) is read-only here: include_storage copies writable disks only");
            if (File.Exists(disk.Path) || Directory.Exists(disk.Path))
                throw new MigrationException($"the disk image {disk.Path} already exists here: include_storage writes a fresh image and never overwrites one");
            try
            {
                if (format == FormatRaw) DiskImageFactory.CreateRaw(disk.Path, size);
                else DiskImageFactory.CreateQcow2(disk.Path, size, new Qcow2CreateOptions { ClusterSizeBytes = cluster });
            }
            catch (Exception e) when (e is DiskImageException or ArgumentException or IOException or UnauthorizedAccessException)
            {
                throw new MigrationException($"the disk image {disk.Path} cannot be created here: {e.Message}", e);
            }
            _created.Add(disk.Path);
        }
        Count = (int)count;
    }

    /// <summary>The built machine's devices, in the order the stream numbers the disks.</summary>
    public void Attach(VirtualMachine machine) => _disks = StorageCopySender.Disks(machine);

    public void Write(ReadOnlySpan<byte> data)
    {
        if (data.Length < 12) throw new MigrationException("the stream is corrupt: a DiskData frame is too short");
        var disk = Disk(BinaryPrimitives.ReadUInt32LittleEndian(data));
        ulong offset = BinaryPrimitives.ReadUInt64LittleEndian(data[4..]);
        var bytes = data[12..];
        if (bytes.Length == 0 || bytes.Length % 512 != 0 || offset % 512 != 0 || offset > disk.Backend.SizeBytes || (ulong)bytes.Length > disk.Backend.SizeBytes - offset)
            throw new MigrationException($"the stream is corrupt: DiskData of {bytes.Length} bytes at {offset} does not fit {disk.Backend.Path} ({disk.Backend.SizeBytes} bytes)");
        try { disk.Backend.Write(offset, bytes); }
        catch (Exception e) when (IsIoError(e)) { throw WriteFailed(disk, e); }
        BytesWritten += bytes.Length;
    }

    public void Zero(ReadOnlySpan<byte> data)
    {
        if (data.Length < 4 || (data.Length - 4) % 16 != 0) throw new MigrationException("the stream is corrupt: a DiskZero frame is not whole runs");
        var disk = Disk(BinaryPrimitives.ReadUInt32LittleEndian(data));
        for (int at = 4; at < data.Length; at += 16)
        {
            ulong offset = BinaryPrimitives.ReadUInt64LittleEndian(data[at..]), length = BinaryPrimitives.ReadUInt64LittleEndian(data[(at + 8)..]);
            if (length == 0 || offset > disk.Backend.SizeBytes || length > disk.Backend.SizeBytes - offset)
                throw new MigrationException($"the stream is corrupt: a zero run {offset}+{length} does not fit {disk.Backend.Path} ({disk.Backend.SizeBytes} bytes)");
            try { disk.Backend.WriteZeroes(offset, length, mayUnmap: true); }
            catch (Exception e) when (IsIoError(e)) { throw WriteFailed(disk, e); }
        }
    }

    /// <summary>Every byte received is on disk (fdatasync) before the VM runs here and the source lets go.</summary>
    public void Flush()
    {
        foreach (var disk in _disks ?? [])
        {
            try { disk.Backend.Flush(); }
            catch (Exception e) when (IsIoError(e)) { throw WriteFailed(disk, e); }
        }
    }

    /// <summary>A failed migration: the images created here go (the machine holding them was disposed first).</summary>
    public void RemoveImages()
    {
        foreach (string path in _created) try { File.Delete(path); } catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        _created.Clear();
    }

    private VirtioBlock Disk(uint index)
    {
        if (_disks is null || index >= _disks.Count) throw new MigrationException($"the stream is corrupt: disk {index} of {_disks?.Count ?? 0}");
        return _disks[(int)index];
    }

    private static bool IsIoError(Exception e) => e is IOException or DiskImageException or UnauthorizedAccessException;

    private static MigrationException WriteFailed(VirtioBlock disk, Exception e) =>
        new($"writing the disk image {disk.Backend.Path} failed: {e.Message}", e);
}
