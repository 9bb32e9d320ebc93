using Microsoft.Win32.SafeHandles;

namespace KvmPS.Vm;

/// <summary>
/// /proc/self/pagemap (Documentation/admin-guide/mm/pagemap.rst): for each of this process's virtual pages, whether
/// it is in RAM or swapped out, and whether it is a file's page or the process's own (written, or anonymous).
/// </summary>
internal static class ProcessPagemap
{
    public const ulong Present = 1UL << 63, Swapped = 1UL << 62, FileOrSharedAnonymous = 1UL << 61;
    private const string PagemapPath = "/proc/self/pagemap";
    private static SafeFileHandle? s_kept;

    /// <summary>
    /// Opens pagemap once and keeps it. A jailed VMM leaves root and so becomes non-dumpable (which keeps other
    /// processes of its user out of its memory), and that makes its own /proc files root's: pagemap 0400. Opened before
    /// the jail, the descriptor keeps working. Not fatal when it cannot be opened: <see cref="Acquire"/> then throws.
    /// </summary>
    public static void KeepOpen()
    {
        if (Volatile.Read(ref s_kept) is not null) return;
        try
        {
            var handle = File.OpenHandle(PagemapPath, FileMode.Open, FileAccess.Read);
            if (Interlocked.CompareExchange(ref s_kept, handle, null) is not null) handle.Dispose(); // another thread kept one first
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }

    /// <summary>The kept descriptor, or a new one the caller disposes (<c>Owned</c>). Throws IOException or
    /// UnauthorizedAccessException when pagemap cannot be opened.</summary>
    public static (SafeFileHandle Handle, bool Owned) Acquire() =>
        Volatile.Read(ref s_kept) is { } kept ? (kept, false) : (File.OpenHandle(PagemapPath, FileMode.Open, FileAccess.Read), true);

    /// <summary>The entries of <paramref name="entries"/>.Length pages from <paramref name="firstVirtualPage"/>.</summary>
    public static void Read(SafeFileHandle pagemap, ulong firstVirtualPage, Span<ulong> entries)
    {
        var bytes = System.Runtime.InteropServices.MemoryMarshal.AsBytes(entries);
        int got = RandomAccess.Read(pagemap, bytes, (long)(firstVirtualPage * 8));
        if (got != bytes.Length) throw new IOException($"short read of {PagemapPath} ({got} of {bytes.Length} bytes)");
    }
}
