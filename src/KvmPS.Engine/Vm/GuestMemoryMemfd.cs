using System.Runtime.InteropServices;
using KvmPS.Interop;

namespace KvmPS.Vm;

/// <summary>
/// Guest RAM in memfds (<see cref="GuestMemoryOptions.Memfd"/>): each region is a sealed memfd mapped MAP_SHARED, so a
/// local live upgrade passes the descriptors to the new VMM (SCM_RIGHTS) and it maps the same pages: no copy
/// (docs/migration.md, "Local live upgrade").
/// </summary>
public sealed unsafe partial class GuestMemory
{
    private const int MAP_FIXED = 0x10; // <sys/mman.h>
    private MemfdHandle?[]? _memfds;

    private static nint MapMemfd(ulong size, GuestMemoryOptions options, int region, out MemfdHandle? memfd)
    {
        memfd = MemfdHandle.Create($"kvmps-guest-ram-{region}", size, options.HugePages == HugePageMode.HugeTlbFs);
        try { return MapAndAdvise(size, options, memfd.Descriptor); }
        catch
        {
            memfd.Dispose();
            memfd = null;
            throw;
        }
    }

    private MemfdHandle? MemfdOf(int region) => _memfds?[region];

    /// <summary>
    /// The memfd of every region, in region order, when all of guest RAM lives in them (and no snapshot file was mapped
    /// over it since); null otherwise.
    /// </summary>
    public IReadOnlyList<MemfdHandle>? SharedMemoryFiles =>
        _memfds is { } fds && fds.All(f => f is not null) && (!MappedFromFile || _adoptedMemfds) ? Array.ConvertAll(fds, f => f!) : null;

    private bool _adoptedMemfds;

    /// <summary>
    /// Maps the memfds another VMM passed over its regions (MAP_SHARED | MAP_FIXED, before any vCPU runs): guest RAM is
    /// then the very pages the other process had. Each must be a memfd of the region's exact size, sealed against
    /// resizing (a file that could shrink would turn guest accesses into SIGBUS). Takes ownership of the handles.
    /// </summary>
    public void AdoptSharedMemory(IReadOnlyList<MemfdHandle> fds)
    {
        if (fds.Count != _regions.Length) throw new GuestMemoryException($"{fds.Count} memory files were passed for {_regions.Length} RAM regions");
        for (int i = 0; i < fds.Count; i++)
        {
            long size = fds[i].SizeBytes;
            if ((ulong)size != _regions[i].SizeBytes) throw new GuestMemoryException($"memory file {i} has {size} bytes, RAM region {i} {_regions[i].SizeBytes}");
            if (!fds[i].SizeSealed) throw new GuestMemoryException($"memory file {i} is not sealed against resizing (F_SEAL_SHRINK, F_SEAL_GROW)");
        }
        var old = _memfds;
        _memfds = new MemfdHandle?[_regions.Length];
        for (int i = 0; i < fds.Count; i++)
        {
            var r = _regions[i];
            nint p = Libc.Mmap(r.HostAddress, (nuint)r.SizeBytes, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED | MAP_FIXED, fds[i].Descriptor, 0);
            if (p == Libc.MAP_FAILED) throw new GuestMemoryException($"cannot map memory file {i} over RAM region {i}: {Libc.ErrorText(Marshal.GetLastPInvokeError())}");
            Libc.Madvise(p, (nuint)r.SizeBytes, Libc.MADV_DONTDUMP);
            _memfds[i] = fds[i];
        }
        if (old is not null) foreach (var fd in old) fd?.Dispose();
        // Pages the other process wrote are in the files but not yet in this process's page tables: pagemap cannot
        // tell which hold data, so a later full snapshot or migration reads them all.
        MappedFromFile = true;
        _adoptedMemfds = true;
    }

    /// <summary>Pages that hold data in the memfds (the others are holes and read as zero).</summary>
    private GuestPageBitmap PagesWithDataIn(IReadOnlyList<MemfdHandle> files)
    {
        var result = new GuestPageBitmap(PageCount);
        for (int i = 0; i < files.Count; i++)
            foreach (var (offset, length) in files[i].DataRanges())
            {
                ulong first = (ulong)offset / MemoryLayout.PageSize, last = ((ulong)(offset + length) + MemoryLayout.PageSize - 1) / MemoryLayout.PageSize;
                result.AddRange(_firstPage[i] + first, Math.Min(last, _regions[i].SizeBytes / MemoryLayout.PageSize) - first);
            }
        return result;
    }

    private static void PunchHole(MemfdHandle memfd, ulong offset, ulong length)
    {
        if (Libc.fallocate(memfd.Descriptor, Libc.FALLOC_FL_PUNCH_HOLE | Libc.FALLOC_FL_KEEP_SIZE, (long)offset, (long)length) != 0)
            throw NativeCallException.FromLastError("fallocate(FALLOC_FL_PUNCH_HOLE)");
    }
}
