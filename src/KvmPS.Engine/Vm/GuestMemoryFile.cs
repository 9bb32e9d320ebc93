using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using KvmPS.Interop;
using KvmPS.State;

namespace KvmPS.Vm;

/// <summary>How a restore brings guest RAM back from a snapshot's memory file.</summary>
public enum RestoreMemoryMode
{
    /// <summary>Map the file MAP_PRIVATE over guest RAM: pages are read on first touch, writes stay in this process.</summary>
    Private,
    /// <summary>Copy the file's data into anonymous guest RAM (holes stay untouched).</summary>
    Copy,
}

/// <summary>
/// Guest RAM to and from a snapshot memory file: the regions back to back in guest-address order, so the file is
/// exactly <see cref="GuestMemory.SizeBytes"/> long; all-zero pages are left as holes (a sparse file).
/// </summary>
public static unsafe class GuestMemoryFile
{
    private const int MAP_FIXED = 0x10; // <sys/mman.h>
    private const int ChunkBytes = 1 << 20;

    /// <summary>
    /// Writes the pages of <paramref name="pages"/> that are not all zero at their offsets (the others stay holes) and
    /// sets the file to the RAM size; returns the data bytes written. A full snapshot passes the pages that may hold
    /// data (<see cref="GuestMemory.PagesThatMayHoldData"/>), a diff the pages dirtied since its parent.
    /// </summary>
    public static ulong WriteSparse(GuestMemory memory, SafeFileHandle file, GuestPageBitmap pages)
    {
        if (pages.PageCount != memory.PageCount) throw new ArgumentException($"the page set covers {pages.PageCount} pages, guest RAM has {memory.PageCount}", nameof(pages));
        ulong written = 0;
        int page = (int)MemoryLayout.PageSize;
        foreach (var (first, count) in pages.Runs())
        {
            for (ulong chunkStart = first; chunkStart < first + count;)
            {
                // At most a chunk, and never across a region's end (the next region is elsewhere in the host).
                var data = HostView(memory, chunkStart, (int)Math.Min((ulong)ChunkPages, first + count - chunkStart));
                int pagesInChunk = data.Length / page;
                int runStart = -1;
                for (int p = 0; p <= pagesInChunk; p++)
                {
                    bool nonZero = p < pagesInChunk && data.Slice(p * page, page).IndexOfAnyExcept((byte)0) >= 0;
                    if (nonZero && runStart < 0) runStart = p;
                    else if (!nonZero && runStart >= 0)
                    {
                        RandomAccess.Write(file, data[(runStart * page)..(p * page)], (long)((chunkStart + (ulong)runStart) * (ulong)page));
                        written += (ulong)((p - runStart) * page);
                        runStart = -1;
                    }
                }
                chunkStart += (ulong)pagesInChunk;
            }
        }
        RandomAccess.SetLength(file, (long)memory.SizeBytes); // trailing zero pages become a hole
        return written;
    }

    private const int ChunkPages = ChunkBytes / 4096;

    /// <summary>Host view of <paramref name="count"/> pages from memory-file page <paramref name="firstPage"/>, which must not cross a region end.</summary>
    private static Span<byte> HostView(GuestMemory memory, ulong firstPage, int count)
    {
        ulong offset = firstPage * MemoryLayout.PageSize;
        foreach (var r in memory.Regions)
        {
            if (offset < r.SizeBytes)
            {
                ulong bytes = (ulong)count * MemoryLayout.PageSize;
                if (bytes > r.SizeBytes - offset) return new Span<byte>((byte*)r.HostAddress + offset, (int)(r.SizeBytes - offset));
                return new Span<byte>((byte*)r.HostAddress + offset, (int)bytes);
            }
            offset -= r.SizeBytes;
        }
        throw new ArgumentOutOfRangeException(nameof(firstPage), $"page {firstPage} is beyond guest RAM");
    }

    /// <summary>Maps the file MAP_PRIVATE|MAP_FIXED over each region (before any vCPU has run).</summary>
    public static void MapPrivate(GuestMemory memory, SafeFileHandle file, string path)
    {
        if (memory.Options.HugePages == HugePageMode.HugeTlbFs)
            throw new GuestMemoryException($"{path}: hugetlbfs-backed guest memory cannot map a memory file; restore with --restore-memory copy.");
        int fd = (int)file.DangerousGetHandle();
        ulong fileOffset = 0;
        foreach (var r in memory.Regions)
        {
            nint p = Libc.Mmap(r.HostAddress, (nuint)r.SizeBytes, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_PRIVATE | MAP_FIXED, fd, (long)fileOffset);
            if (p == Libc.MAP_FAILED || p != r.HostAddress)
                throw new GuestMemoryException($"{path}: cannot map the memory file over guest RAM: {Libc.ErrorText(Marshal.GetLastPInvokeError())}");
            Libc.Madvise(p, (nuint)r.SizeBytes, Libc.MADV_DONTDUMP);
            fileOffset += r.SizeBytes;
        }
        memory.MappedFromFile = true;
    }

    /// <summary>Runs of at least this many pages are mapped from a diff's file rather than copied (fewer mappings for scattered pages).</summary>
    public const ulong MapRunPages = 16;

    /// <summary>
    /// After <see cref="MapPrivate"/> of the base: lays a diff's pages over guest RAM, older diffs first so newer ones
    /// win. Long runs are mapped MAP_PRIVATE|MAP_FIXED from the diff's memory file (read on first touch, like the base;
    /// a hole reads as zeros), short runs are copied.
    /// </summary>
    public static void OverlayMapped(GuestMemory memory, SafeFileHandle file, string path, GuestPageBitmap pages)
    {
        if (pages.PageCount != memory.PageCount) throw new SnapshotException(path, $"the diff covers {pages.PageCount} pages, guest RAM has {memory.PageCount}");
        int fd = (int)file.DangerousGetHandle();
        var shortRuns = new GuestPageBitmap(pages.PageCount);
        foreach (var (first, count) in pages.Runs())
        {
            if (count < MapRunPages) { shortRuns.AddRange(first, count); continue; }
            for (ulong at = first; at < first + count;)
            {
                var target = HostView(memory, at, (int)Math.Min(int.MaxValue / MemoryLayout.PageSize, first + count - at)); // stops at a region's end
                fixed (byte* host = target)
                {
                    nint p = Libc.Mmap((nint)host, (nuint)target.Length, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_PRIVATE | MAP_FIXED, fd, (long)(at * MemoryLayout.PageSize));
                    if (p == Libc.MAP_FAILED || p != (nint)host)
                        throw new SnapshotException(path, $"cannot map the diff's pages over guest RAM: {Libc.ErrorText(Marshal.GetLastPInvokeError())}");
                    Libc.Madvise(p, (nuint)target.Length, Libc.MADV_DONTDUMP);
                }
                memory.MappedFromFile = true; // untouched pages there hold the file's data, not zeros
                at += (ulong)target.Length / MemoryLayout.PageSize;
            }
        }
        Overlay(memory, file, path, shortRuns, new GuestPageBitmap(pages.PageCount));
    }

    /// <summary>
    /// Copies the pages of <paramref name="pages"/> that are not yet in <paramref name="done"/> from a diff's memory file
    /// into guest RAM (holes read as zeros and are written as zeros: the page was zero when the diff was taken), and
    /// adds them to <paramref name="done"/>. Diffs are applied newest first, so each page is copied once, from the
    /// newest diff that has it.
    /// </summary>
    public static void Overlay(GuestMemory memory, SafeFileHandle file, string path, GuestPageBitmap pages, GuestPageBitmap done)
    {
        if (pages.PageCount != memory.PageCount) throw new SnapshotException(path, $"the diff covers {pages.PageCount} pages, guest RAM has {memory.PageCount}");
        int page = (int)MemoryLayout.PageSize;
        var buffer = new byte[ChunkBytes];
        foreach (var (first, count) in pages.Runs())
        {
            for (ulong chunkStart = first; chunkStart < first + count;)
            {
                var target = HostView(memory, chunkStart, (int)Math.Min((ulong)ChunkPages, first + count - chunkStart));
                int length = target.Length;
                int got = 0;
                while (got < length)
                {
                    int n = RandomAccess.Read(file, buffer.AsSpan(got, length - got), (long)(chunkStart * (ulong)page) + got);
                    if (n <= 0) throw new SnapshotException(path, $"the memory file ends early at byte {chunkStart * (ulong)page + (ulong)got}");
                    got += n;
                }
                // Raw copies, not device writes: dirty tracking starts after the restore.
                for (int p = 0; p < length / page; p++)
                {
                    if (done.Contains(chunkStart + (ulong)p)) continue;
                    buffer.AsSpan(p * page, page).CopyTo(target.Slice(p * page, page));
                    done.Add(chunkStart + (ulong)p);
                }
                chunkStart += (ulong)(length / page);
            }
        }
    }

    /// <summary>Copies the file's pages that are not all zero into guest RAM (zero pages stay untouched, costing nothing).</summary>
    public static void Copy(GuestMemory memory, SafeFileHandle file, string path)
    {
        var buffer = new byte[ChunkBytes];
        int page = (int)MemoryLayout.PageSize;
        ulong fileOffset = 0;
        foreach (var r in memory.Regions)
        {
            for (ulong chunk = 0; chunk < r.SizeBytes; chunk += ChunkBytes)
            {
                int length = (int)Math.Min((ulong)ChunkBytes, r.SizeBytes - chunk);
                int got = 0;
                while (got < length)
                {
                    int n = RandomAccess.Read(file, buffer.AsSpan(got, length - got), (long)(fileOffset + chunk) + got);
                    if (n <= 0) throw new IOException($"{path}: the memory file ends early at byte {fileOffset + chunk + (ulong)got}.");
                    got += n;
                }
                var target = new Span<byte>((byte*)r.HostAddress + chunk, length);
                for (int p = 0; p < length; p += page)
                {
                    var src = buffer.AsSpan(p, page);
                    if (src.IndexOfAnyExcept((byte)0) >= 0) src.CopyTo(target.Slice(p, page));
                }
            }
            fileOffset += r.SizeBytes;
        }
    }
}
