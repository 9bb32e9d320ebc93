using System.Text;
using KvmPS.Management.Definitions;
using VmName_ = KvmPS.Management.Definitions.VmName;

namespace KvmPS.Management.Store;

/// <summary>
/// The check an ISO for a DVD drive must pass before a definition holding it is stored or started: the file exists,
/// can be read, and is ISO 9660 (ECMA-119: the first volume descriptor at sector 16, byte 0x8000, whose standard
/// identifier "CD001" is at byte 0x8001). A hybrid image (an ISO that is also a disk image) passes.
/// </summary>
public static class IsoImage
{
    /// <summary>Byte offset of the standard identifier of the first volume descriptor (sector 16 of 2048 bytes, + 1).</summary>
    public const long IdentifierOffset = 0x8001;

    public static ReadOnlySpan<byte> Identifier => "CD001"u8;

    /// <summary>Null when <paramref name="path"/> is an ISO 9660 image, else why not (for an error message).</summary>
    public static string? Problem(string path)
    {
        try
        {
            using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1, FileOptions.None);
            if (file.Length < IdentifierOffset + Identifier.Length)
                return $"is not an ISO 9660 image: {file.Length} bytes is too short to hold a volume descriptor at byte 0x8000";
            Span<byte> read = stackalloc byte[5];
            file.Position = IdentifierOffset;
            file.ReadExactly(read);
            return read.SequenceEqual(Identifier) ? null
                : $"is not an ISO 9660 image (no \"CD001\" at byte 0x8001; found \"{Printable(read)}\")";
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return "does not exist";
        }
        catch (UnauthorizedAccessException e)
        {
            return $"cannot be read ({e.Message})";
        }
        catch (IOException e)
        {
            return $"cannot be read ({e.Message})";
        }
    }

    /// <summary>Throws <see cref="IsoImageException"/> unless <paramref name="path"/> is an ISO 9660 image.</summary>
    public static void Check(string vmName, string property, string path)
    {
        if (Problem(path) is { } problem)
            throw new IsoImageException(vmName, property, path, problem);
    }

    private static string Printable(ReadOnlySpan<byte> bytes)
    {
        var text = new StringBuilder(bytes.Length);
        foreach (var b in bytes)
            text.Append(b is >= 0x20 and < 0x7F ? (char)b : '.');
        return text.ToString();
    }
}

/// <summary>A DVD drive's ISO is missing, unreadable or not ISO 9660. Names the VM, the property and the file.</summary>
public sealed class IsoImageException : VmStoreException
{
    public IsoImageException(string vmName, string property, string path, string reason)
        : base($"VM '{VmName_.ForDisplay(vmName)}': {property} '{path}' {reason}")
    {
        VmName = vmName;
        Property = property;
        Path = path;
        Reason = reason;
    }

    public string VmName { get; }
    public string Property { get; }
    public string Path { get; }
    public string Reason { get; }
}
