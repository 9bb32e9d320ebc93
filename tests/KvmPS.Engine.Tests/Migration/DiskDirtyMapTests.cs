using KvmPS.Devices.Virtio.Block;
using Xunit;

namespace KvmPS.Engine.Tests.Migration;

/// <summary>The per-disk dirty map of a storage migration: which 64 KiB blocks a write touches, taking, finding.</summary>
public class DiskDirtyMapTests
{
    private const ulong Block = DiskDirtyMap.BlockSize;

    [Fact]
    public void AWriteMarksEveryBlockItTouchesOnce()
    {
        var map = new DiskDirtyMap(10 * Block);
        map.Mark(Block - 512, 1024); // straddles blocks 0 and 1
        map.Mark(Block, 512);        // block 1 again: not counted twice
        map.Mark(9 * Block + 4096, 512);
        Assert.Equal(3, map.Count);
        Assert.Equal(0, map.NextMarked(0));
        Assert.Equal(1, map.NextMarked(1));
        Assert.Equal(9, map.NextMarked(2));
        Assert.Equal(-1, map.NextMarked(10));
    }

    [Fact]
    public void TakingClearsOnlyWhatWasMarked()
    {
        var map = new DiskDirtyMap(200 * Block); // more than one 64-bit word of blocks
        map.Mark(130 * Block, 3 * Block);
        Assert.Equal(3, map.Count);
        Assert.False(map.Take(5));
        Assert.True(map.Take(131));
        Assert.False(map.Take(131));
        Assert.Equal(2, map.Count);
        Assert.Equal(130, map.NextMarked(0));
        Assert.Equal(132, map.NextMarked(131));
    }

    [Fact]
    public void ThePartialLastBlockCountsAndWritesPastTheEndAreIgnored()
    {
        var map = new DiskDirtyMap(2 * Block + 512);
        Assert.Equal(3, map.Blocks);
        map.Mark(2 * Block, 512);
        map.Mark(5 * Block, 512); // beyond the disk: a request the device refused never gets here, so nothing to record
        map.Mark(0, 0);
        Assert.Equal(1, map.Count);
        Assert.Equal(2, map.NextMarked(0));
    }

    [Fact]
    public void MarksFromManyThreadsAreAllCounted()
    {
        var map = new DiskDirtyMap(4096 * Block);
        Parallel.For(0, 4096, b => map.Mark((ulong)b * Block + 100, 10));
        Assert.Equal(4096, map.Count);
        long taken = 0;
        for (long b = map.NextMarked(0); b >= 0; b = map.NextMarked(b + 1)) if (map.Take(b)) taken++;
        Assert.Equal(4096, taken);
        Assert.Equal(0, map.Count);
    }
}
