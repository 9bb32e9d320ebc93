namespace KvmPS.Storage;

/// <summary>Writes explicit zeroes, for file systems without fallocate zeroing.</summary>
internal static class ZeroFill
{
    private static readonly byte[] Zeroes = new byte[1 << 20];

    public static void Write(ImageFile file, long offset, long lengthBytes)
    {
        while (lengthBytes > 0)
        {
            int n = (int)Math.Min(lengthBytes, Zeroes.Length);
            file.Write(offset, Zeroes.AsSpan(0, n));
            offset += n;
            lengthBytes -= n;
        }
    }
}
