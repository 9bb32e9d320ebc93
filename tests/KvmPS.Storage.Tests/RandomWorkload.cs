namespace KvmPS.Storage.Tests;

/// <summary>Seeded random writes/zeroes/discards applied to an image and to an in-memory model.</summary>
public static class RandomWorkload
{
    public static void Run(IBlockBackend image, byte[] model, int seed, int operations, long discardGranularityBytes,
        int maxLengthBytes = 200_000, Action<int>? afterEach = null, int verifyEvery = 50)
    {
        var random = new Random(seed);
        var buffer = new byte[maxLengthBytes];
        for (int op = 0; op < operations; op++)
        {
            int kind = random.Next(100);
            int length = random.Next(1, maxLengthBytes);
            long offset = random.NextInt64(0, model.Length - length);
            if (kind < 75)
            {
                random.NextBytes(buffer.AsSpan(0, length));
                image.Write((ulong)offset, buffer.AsSpan(0, length));
                buffer.AsSpan(0, length).CopyTo(model.AsSpan((int)offset));
            }
            else if (kind < 87)
            {
                image.WriteZeroes((ulong)offset, (ulong)length, mayUnmap: random.Next(2) == 0);
                model.AsSpan((int)offset, length).Clear();
            }
            else if (kind < 97)
            {
                // Discard only whole clusters so the outcome (zeroes) is deterministic.
                long start = offset / discardGranularityBytes * discardGranularityBytes;
                long count = Math.Max(1, length / discardGranularityBytes);
                long end = Math.Min(model.Length, start + count * discardGranularityBytes);
                image.Discard((ulong)start, (ulong)(end - start));
                model.AsSpan((int)start, (int)(end - start)).Clear();
            }
            else
            {
                image.Flush();
            }
            if (verifyEvery > 0 && op % verifyEvery == verifyEvery - 1)
            {
                AssertSame(image, model);
            }
            afterEach?.Invoke(op);
        }
        AssertSame(image, model);
    }

    public static void ExportToRaw(IBlockBackend image, string rawPath)
    {
        var all = new byte[image.SizeBytes];
        image.Read(0, all);
        File.WriteAllBytes(rawPath, all);
    }

    public static void AssertSame(IBlockBackend image, byte[] expected)
    {
        Assert.Equal((ulong)expected.Length, image.SizeBytes);
        var actual = new byte[expected.Length];
        // Read in odd-sized pieces to exercise cluster-crossing reads.
        int position = 0;
        int piece = 70_001;
        while (position < actual.Length)
        {
            int n = Math.Min(piece, actual.Length - position);
            image.Read((ulong)position, actual.AsSpan(position, n));
            position += n;
        }
        int mismatch = actual.AsSpan().CommonPrefixLength(expected);
        Assert.True(mismatch == expected.Length, $"image {image.Path} differs from the model at byte {mismatch}");
    }
}
