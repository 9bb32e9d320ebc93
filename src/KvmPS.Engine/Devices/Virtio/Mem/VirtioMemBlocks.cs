using System.Buffers.Binary;
using System.Numerics;

namespace KvmPS.Devices.Virtio.Mem;

/// <summary>
/// The plug state of a virtio-mem region, one bit per block, and the guest's requests against it (virtio 1.2
/// "Memory Device", struct virtio_mem_req / virtio_mem_resp of Linux's include/uapi/linux/virtio_mem.h). Everything
/// in a request is guest-controlled: each one is checked (alignment, range, block count, current state) and a bad
/// one is answered VIRTIO_MEM_RESP_ERROR without changing anything. Not thread-safe: the device calls it under its lock.
/// </summary>
public sealed class VirtioMemBlocks
{
    public const ushort VIRTIO_MEM_REQ_PLUG = 0, VIRTIO_MEM_REQ_UNPLUG = 1, VIRTIO_MEM_REQ_UNPLUG_ALL = 2, VIRTIO_MEM_REQ_STATE = 3;
    public const ushort VIRTIO_MEM_RESP_ACK = 0, VIRTIO_MEM_RESP_NACK = 1, VIRTIO_MEM_RESP_BUSY = 2, VIRTIO_MEM_RESP_ERROR = 3;
    public const ushort VIRTIO_MEM_STATE_PLUGGED = 0, VIRTIO_MEM_STATE_UNPLUGGED = 1, VIRTIO_MEM_STATE_MIXED = 2;
    /// <summary>sizeof(struct virtio_mem_req): le16 type, 3 × le16 padding, le64 addr, le16 nb_blocks, 3 × le16 padding.</summary>
    public const int RequestBytes = 24;
    /// <summary>struct virtio_mem_resp without tail padding: le16 type, 3 × le16 padding, le16 state.</summary>
    public const int ResponseBytes = 10;

    private readonly ulong[] _plugged;
    private readonly Action<ulong, ulong> _discard;

    /// <param name="discard">Gives the host memory of an unplugged guest range back (address, length in bytes).</param>
    public VirtioMemBlocks(ulong regionAddress, ulong regionBytes, ulong blockSizeBytes, Action<ulong, ulong> discard)
    {
        if (blockSizeBytes == 0 || !BitOperations.IsPow2(blockSizeBytes)) throw new ArgumentOutOfRangeException(nameof(blockSizeBytes), $"block size {blockSizeBytes} is not a power of two.");
        if (regionAddress % blockSizeBytes != 0 || regionBytes % blockSizeBytes != 0 || regionBytes == 0)
            throw new ArgumentOutOfRangeException(nameof(regionBytes), $"region 0x{regionAddress:x}+0x{regionBytes:x} is not a whole number of {blockSizeBytes}-byte blocks.");
        RegionAddress = regionAddress;
        RegionBytes = regionBytes;
        BlockSizeBytes = blockSizeBytes;
        BlockCount = regionBytes / blockSizeBytes;
        _plugged = new ulong[(BlockCount + 63) / 64];
        _discard = discard;
    }

    public ulong RegionAddress { get; }
    public ulong RegionBytes { get; }
    public ulong BlockSizeBytes { get; }
    public ulong BlockCount { get; }
    public ulong PluggedBlocks { get; private set; }
    public ulong PluggedBytes => PluggedBlocks * BlockSizeBytes;
    /// <summary>requested_size: what the host wants plugged; plug requests beyond it are refused (NACK).</summary>
    public ulong RequestedBytes { get; set; }
    /// <summary>Requests answered VIRTIO_MEM_RESP_ERROR (malformed, out of range, wrong state).</summary>
    public long ErrorResponses { get; private set; }
    /// <summary>The reason of the last error response, for the log.</summary>
    public string? LastError { get; private set; }

    public bool IsPlugged(ulong block) => (_plugged[block >> 6] & (1UL << (int)(block & 63))) != 0;

    /// <summary>The bitmap, one bit per block (for the state record).</summary>
    public ulong[] CopyBitmap() => (ulong[])_plugged.Clone();

    /// <summary>Replaces the bitmap (restore); bits beyond the last block are refused.</summary>
    public void LoadBitmap(ReadOnlySpan<ulong> bitmap)
    {
        if (bitmap.Length != _plugged.Length) throw new ArgumentException($"the bitmap has {bitmap.Length} words, the region needs {_plugged.Length}");
        if (BlockCount % 64 != 0 && (bitmap[^1] >> (int)(BlockCount % 64)) != 0) throw new ArgumentException($"the bitmap marks blocks beyond the {BlockCount} of the region");
        bitmap.CopyTo(_plugged);
        ulong n = 0;
        foreach (ulong w in _plugged) n += (ulong)BitOperations.PopCount(w);
        PluggedBlocks = n;
    }

    /// <summary>Handles one request and writes the response (<see cref="ResponseBytes"/>) into <paramref name="response"/>.</summary>
    public void Handle(ReadOnlySpan<byte> request, Span<byte> response)
    {
        var (type, state) = Handle(request);
        response[..ResponseBytes].Clear();
        BinaryPrimitives.WriteUInt16LittleEndian(response, type);
        BinaryPrimitives.WriteUInt16LittleEndian(response[8..], state);
    }

    /// <summary>Handles one request; returns the response type and (for STATE) the state.</summary>
    public (ushort Type, ushort State) Handle(ReadOnlySpan<byte> request)
    {
        if (request.Length < RequestBytes) return Error($"a request of {request.Length} bytes (a virtio_mem_req has {RequestBytes})");
        ushort type = BinaryPrimitives.ReadUInt16LittleEndian(request);
        ulong addr = BinaryPrimitives.ReadUInt64LittleEndian(request[8..]);
        ushort count = BinaryPrimitives.ReadUInt16LittleEndian(request[16..]);
        switch (type)
        {
            case VIRTIO_MEM_REQ_PLUG:
            {
                if (!TryRange(addr, count, "plug", out ulong first, out var error)) return Error(error);
                if (AnyPlugged(first, count, wantPlugged: true)) return Error($"plug 0x{addr:x} × {count}: a block is already plugged");
                if (PluggedBytes + count * BlockSizeBytes > RequestedBytes) return (VIRTIO_MEM_RESP_NACK, 0); // beyond requested_size
                SetRange(first, count, true);
                return (VIRTIO_MEM_RESP_ACK, 0);
            }
            case VIRTIO_MEM_REQ_UNPLUG:
            {
                if (!TryRange(addr, count, "unplug", out ulong first, out var error)) return Error(error);
                if (AnyPlugged(first, count, wantPlugged: false)) return Error($"unplug 0x{addr:x} × {count}: a block is not plugged");
                SetRange(first, count, false);
                _discard(RegionAddress + first * BlockSizeBytes, count * BlockSizeBytes);
                return (VIRTIO_MEM_RESP_ACK, 0);
            }
            case VIRTIO_MEM_REQ_UNPLUG_ALL:
                UnplugAll();
                return (VIRTIO_MEM_RESP_ACK, 0);
            case VIRTIO_MEM_REQ_STATE:
            {
                if (!TryRange(addr, count, "state", out ulong first, out var error)) return Error(error);
                bool anyPlugged = AnyPlugged(first, count, wantPlugged: true), anyUnplugged = AnyPlugged(first, count, wantPlugged: false);
                return (VIRTIO_MEM_RESP_ACK, anyPlugged && anyUnplugged ? VIRTIO_MEM_STATE_MIXED : anyPlugged ? VIRTIO_MEM_STATE_PLUGGED : VIRTIO_MEM_STATE_UNPLUGGED);
            }
            default:
                return Error($"unknown request type {type}");
        }
    }

    /// <summary>Unplugs every block and gives the memory back, in runs of plugged blocks.</summary>
    public void UnplugAll()
    {
        ulong block = 0;
        while (block < BlockCount)
        {
            if (!IsPlugged(block)) { block++; continue; }
            ulong end = block;
            while (end < BlockCount && IsPlugged(end)) end++;
            SetRange(block, end - block, false);
            _discard(RegionAddress + block * BlockSizeBytes, (end - block) * BlockSizeBytes);
            block = end;
        }
    }

    /// <summary>[addr, addr + count blocks) must be block-aligned, non-empty and inside the region (the usable region is the whole region here).</summary>
    private bool TryRange(ulong addr, ushort count, string what, out ulong first, out string error)
    {
        first = 0;
        error = "";
        if (count == 0) { error = $"{what} 0x{addr:x}: nb_blocks is 0"; return false; }
        if (addr % BlockSizeBytes != 0) { error = $"{what} 0x{addr:x}: not aligned to the {BlockSizeBytes}-byte block size"; return false; }
        if (addr < RegionAddress || (addr - RegionAddress) / BlockSizeBytes >= BlockCount || count > BlockCount - (addr - RegionAddress) / BlockSizeBytes)
        {
            error = $"{what} 0x{addr:x} × {count} blocks: outside the region 0x{RegionAddress:x}-0x{RegionAddress + RegionBytes:x}";
            return false;
        }
        first = (addr - RegionAddress) / BlockSizeBytes;
        return true;
    }

    private bool AnyPlugged(ulong first, ulong count, bool wantPlugged)
    {
        for (ulong b = first; b < first + count; b++) if (IsPlugged(b) == wantPlugged) return true;
        return false;
    }

    private void SetRange(ulong first, ulong count, bool plugged)
    {
        for (ulong b = first; b < first + count; b++)
        {
            ref ulong word = ref _plugged[b >> 6];
            ulong bit = 1UL << (int)(b & 63);
            if (((word & bit) != 0) == plugged) continue;
            word ^= bit;
            PluggedBlocks = plugged ? PluggedBlocks + 1 : PluggedBlocks - 1;
        }
    }

    private (ushort, ushort) Error(string reason)
    {
        ErrorResponses++;
        LastError = reason;
        return (VIRTIO_MEM_RESP_ERROR, 0);
    }
}
