namespace KvmPS.Storage;

/// <summary>Argument checks shared by the backends.</summary>
internal static class BlockRequestValidator
{
    public static void CheckRange(string path, ulong sizeBytes, ulong offset, ulong lengthBytes)
    {
        if (offset > sizeBytes || lengthBytes > sizeBytes - offset)
        {
            throw new ArgumentOutOfRangeException(nameof(offset),
                $"Request [{offset}, +{lengthBytes}) is outside disk image '{path}' of {sizeBytes} bytes.");
        }
    }

    public static void CheckWritable(string path, bool readOnly)
    {
        if (readOnly)
        {
            throw new DiskImageReadOnlyException(path);
        }
    }
}
