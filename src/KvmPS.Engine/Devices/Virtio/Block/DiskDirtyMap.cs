namespace KvmPS.Devices.Virtio.Block;

/// <summary>
/// Which blocks of a disk the guest wrote since they were last taken (live storage migration, docs/migration.md):
/// one bit per <see cref="BlockSize"/> bytes. The device marks a block after the write reached the backend, so a
/// reader that takes (clears) a block's bit before it reads the block either sees the write or finds the bit set again.
/// Lock-free: the I/O thread marks while the migration thread takes.
/// </summary>
public sealed class DiskDirtyMap
{
    /// <summary>64 KiB, as QEMU's dirty bitmaps for block migration: small enough that a 4 KiB write resends little.</summary>
    public const int BlockSize = 64 * 1024;

    private readonly ulong[] _bits;
    private long _count;

    public DiskDirtyMap(ulong sizeBytes)
    {
        SizeBytes = sizeBytes;
        Blocks = (long)((sizeBytes + BlockSize - 1) / BlockSize);
        _bits = new ulong[(Blocks + 63) / 64];
    }

    public ulong SizeBytes { get; }
    public long Blocks { get; }
    /// <summary>Blocks marked and not taken yet.</summary>
    public long Count => Interlocked.Read(ref _count);

    /// <summary>Marks every block [offset, offset + length) touches.</summary>
    public void Mark(ulong offset, ulong length)
    {
        if (length == 0 || offset >= SizeBytes) return;
        long first = (long)(offset / BlockSize), last = (long)(Math.Min(offset + length, SizeBytes) - 1) / BlockSize;
        for (long b = first; b <= last; b++)
        {
            ulong bit = 1UL << (int)(b & 63);
            if ((Interlocked.Or(ref _bits[b >> 6], bit) & bit) == 0) Interlocked.Increment(ref _count);
        }
    }

    /// <summary>Clears the block's bit; true when it was set.</summary>
    public bool Take(long block)
    {
        ulong bit = 1UL << (int)(block & 63);
        if ((Interlocked.And(ref _bits[block >> 6], ~bit) & bit) == 0) return false;
        Interlocked.Decrement(ref _count);
        return true;
    }

    /// <summary>The next marked block at or after <paramref name="from"/>, or -1 (the bit is not cleared).</summary>
    public long NextMarked(long from)
    {
        for (long word = from >> 6; word < _bits.Length; word++)
        {
            ulong w = Volatile.Read(ref _bits[word]);
            if (word == from >> 6) w &= ~0UL << (int)(from & 63);
            if (w != 0) return word * 64 + System.Numerics.BitOperations.TrailingZeroCount(w);
        }
        return -1;
    }
}
