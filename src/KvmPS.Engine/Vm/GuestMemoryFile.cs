using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using KvmPS.Interop;

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

    /// <summary>Writes every page that is not all zero; returns the data bytes written.</summary>
    public static ulong WriteSparse(GuestMemory memory, SafeFileHandle file)
    {
        ulong fileOffset = 0, written = 0;
        int page = (int)MemoryLayout.PageSize;
        foreach (var region in memory.Regions)
        {
            for (ulong chunk = 0; chunk < region.SizeBytes; chunk += ChunkBytes)
            {
                int length = (int)Math.Min((ulong)ChunkBytes, region.SizeBytes - chunk);
                var data = new ReadOnlySpan<byte>((byte*)region.HostAddress + chunk, length);
                int runStart = -1;
                for (int p = 0; p <= length; p += page)
                {
                    bool dirty = p < length && data.Slice(p, page).IndexOfAnyExcept((byte)0) >= 0;
                    if (dirty && runStart < 0) runStart = p;
                    else if (!dirty && runStart >= 0)
                    {
                        RandomAccess.Write(file, data[runStart..p], (long)(fileOffset + chunk + (ulong)runStart));
                        written += (ulong)(p - runStart);
                        runStart = -1;
                    }
                }
            }
            fileOffset += region.SizeBytes;
        }
        RandomAccess.SetLength(file, (long)fileOffset); // trailing zero pages become a hole
        return written;
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
