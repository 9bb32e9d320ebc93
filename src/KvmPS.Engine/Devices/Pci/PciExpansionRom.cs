namespace KvmPS.Devices.Pci;

/// <summary>A ROM image that cannot be attached to a PCI function; names the file and why.</summary>
public sealed class ExpansionRomException(string path, string message) : Exception($"{path}: {message}")
{
    public string Path { get; } = path;
}

/// <summary>
/// A PCI expansion ROM (the image behind the ROM BAR at config offset 0x30): read-only bytes the firmware copies
/// out and runs (SeaBIOS runs a PnP option ROM such as iPXE's). The BAR is a power of two of at least 2 KiB
/// (address bits 31:11, bit 0 enables decoding); reads past the image return zero, as padding in a real part does.
/// </summary>
public sealed class PciExpansionRom
{
    public const int MaxBytes = 1 << 20;
    public const uint MinBarSize = 2048;
    public const uint EnableBit = 1;

    public byte[] Image { get; }
    /// <summary>The BAR's decode size: the image rounded up to a power of two (at least 2 KiB).</summary>
    public uint BarSize { get; }
    /// <summary>Where the image came from, for messages ("(in memory)" for one given as bytes).</summary>
    public string Source { get; }

    /// <summary>Checks an image: not empty, at most 1 MiB, and starting with the option ROM signature 0x55 0xAA.</summary>
    public PciExpansionRom(byte[] image, string source = "(in memory)")
    {
        if (image.Length == 0) throw new ExpansionRomException(source, "the ROM image is empty.");
        if (image.Length > MaxBytes) throw new ExpansionRomException(source, $"the ROM image is {image.Length} bytes; a PCI expansion ROM here is at most {MaxBytes} bytes (1 MiB).");
        if (image.Length < 2 || image[0] != 0x55 || image[1] != 0xAA)
            throw new ExpansionRomException(source, "not a PCI option ROM: it does not start with the signature 0x55 0xAA.");
        Image = image;
        Source = source;
        BarSize = Math.Max(MinBarSize, System.Numerics.BitOperations.RoundUpToPowerOf2((uint)image.Length));
    }

    /// <summary>Reads a ROM file; a missing, unreadable, oversized or unsigned file is refused naming it.</summary>
    public static PciExpansionRom Load(string path)
    {
        byte[] bytes;
        try
        {
            var info = new FileInfo(path);
            if (Directory.Exists(path)) throw new ExpansionRomException(path, "the ROM image is a directory, not a file.");
            if (!info.Exists) throw new ExpansionRomException(path, "the ROM image does not exist.");
            if (info.Length > MaxBytes) throw new ExpansionRomException(path, $"the ROM image is {info.Length} bytes; a PCI expansion ROM here is at most {MaxBytes} bytes (1 MiB).");
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ExpansionRomException(path, $"cannot read the ROM image: {e.Message}");
        }
        return new PciExpansionRom(bytes, path);
    }

    internal void Read(ulong offset, Span<byte> data)
    {
        for (int i = 0; i < data.Length; i++)
        {
            ulong o = offset + (ulong)i;
            data[i] = o < (ulong)Image.Length ? Image[(int)o] : (byte)0;
        }
    }
}
