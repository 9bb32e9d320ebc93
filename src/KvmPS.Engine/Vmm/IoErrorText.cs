namespace KvmPS.Vmm;

/// <summary>
/// What went wrong with a file, in words. kvmps-vmm is built with UseSystemResourceKeys (smaller NativeAOT
/// binary), so the runtime's own messages are resource keys ("IO_PathNotFound_Path, /boot/vmlinuz"); the
/// common cases a user causes get plain text here, and any other key is never shown bare.
/// </summary>
public static class IoErrorText
{
    /// <param name="path">The file concerned, when known: a directory where a file was expected is said so.</param>
    public static string Describe(Exception e, string? path = null) => e switch
    {
        _ when path is not null && e is UnauthorizedAccessException or IOException && Directory.Exists(path) => "it is a directory, not a file",
        FileNotFoundException => "no such file",
        DirectoryNotFoundException => "no such directory",
        UnauthorizedAccessException => "permission denied",
        PathTooLongException => "the path is too long",
        _ => Words(e.Message),
    };

    /// <summary>
    /// A message that is only a resource key (<c>IO_SharingViolation_File, PATH</c>) becomes "I/O error (key)" with the
    /// key's words; a real message is kept.
    /// </summary>
    private static string Words(string message)
    {
        int comma = message.IndexOf(',');
        string head = comma < 0 ? message : message[..comma];
        bool isKey = head.Length > 0 && head.Contains('_') && !head.Contains(' ') && head.All(c => char.IsAsciiLetterOrDigit(c) || c == '_');
        if (!isKey) return message;
        return head switch
        {
            _ when head.StartsWith("IO_PathNotFound", StringComparison.Ordinal) => "no such directory",
            _ when head.StartsWith("IO_FileNotFound", StringComparison.Ordinal) => "no such file",
            _ when head.StartsWith("IO_SharingViolation", StringComparison.Ordinal) => "the file is in use by another process",
            _ when head.StartsWith("IO_FileExists", StringComparison.Ordinal) => "the file already exists",
            _ when head.StartsWith("IO_DiskFull", StringComparison.Ordinal) => "no space left on the device",
            _ when head.StartsWith("UnauthorizedAccess", StringComparison.Ordinal) => "permission denied",
            _ => $"I/O error ({head.Replace('_', ' ')})",
        };
    }
}
