namespace KvmPS.Vmm;

/// <summary>
/// What went wrong with a file, in words. kvmps-vmm is built with UseSystemResourceKeys (smaller NativeAOT
/// binary), so the runtime's own messages are resource keys ("IO_FileNotFound_FileName, /boot/vmlinuz"); the
/// common cases a user causes get plain text here.
/// </summary>
public static class IoErrorText
{
    public static string Describe(Exception e) => e switch
    {
        FileNotFoundException => "no such file",
        DirectoryNotFoundException => "no such directory",
        UnauthorizedAccessException => "permission denied",
        PathTooLongException => "the path is too long",
        _ => e.Message,
    };
}
