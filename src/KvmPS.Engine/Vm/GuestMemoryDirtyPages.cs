using System.Runtime.InteropServices;
using KvmPS.Interop;

namespace KvmPS.Vm;

/// <summary>
/// Which guest pages changed: "pages dirtied since the last harvest = KVM's dirty log (what the vCPUs and KVM itself
/// wrote) ∪ the VMM's own record of what devices wrote" (virtio rings, block reads into guest buffers, net rx, fw_cfg
/// DMA, balloon discards: KVM never sees those). Diff snapshots use it, live migration will.
/// </summary>
public sealed unsafe partial class GuestMemory
{
    /// <summary>Per region, one bit per page written through <see cref="GetWritableSpan"/> and friends since the last harvest.</summary>
    private readonly ulong[][] _written;
    /// <summary>Per region, the number (in memory-file order) of its first page.</summary>
    private readonly ulong[] _firstPage;
    private KvmVmHandle? _kvm;
    private ISlotDirtyLog? _dirtyLog;
    private readonly object _trackingLock = new();

    /// <summary>Guest RAM pages in all regions (the memory file's page count).</summary>
    public ulong PageCount => SizeBytes / MemoryLayout.PageSize;

    /// <summary>True once KVM logs dirty pages (<see cref="StartDirtyTracking"/>, or <see cref="RegisterWith"/> asked to): it stays on.</summary>
    public bool DirtyTracking { get; private set; }

    /// <summary>
    /// True after a snapshot's memory file was mapped over guest RAM (MAP_PRIVATE): a page the process never
    /// touched then holds the file's data, not zeros, so residency (pagemap) no longer tells which pages are zero.
    /// </summary>
    public bool MappedFromFile { get; internal set; }

    /// <summary>The memory-file page number of guest page <paramref name="gpa"/>, or null outside guest RAM.</summary>
    public ulong? FilePageOf(ulong gpa)
    {
        var r = FindRegionIndex(gpa, out int index);
        return r is null ? null : _firstPage[index] + (gpa - r.GuestAddress) / MemoryLayout.PageSize;
    }

    /// <summary>Cheap and thread-safe: an atomic OR per 64 pages, skipped when the bits are already set.</summary>
    private void MarkWritten(int region, ulong offset, ulong length)
    {
        if (length == 0) return;
        var bits = _written[region];
        ulong first = offset / MemoryLayout.PageSize, last = (offset + length - 1) / MemoryLayout.PageSize;
        for (ulong page = first; page <= last;)
        {
            int word = (int)(page >> 6);
            int from = (int)(page & 63);
            int to = (int)Math.Min(63, from + (long)(last - page));
            ulong mask = (to == 63 ? ulong.MaxValue : (1UL << (to + 1)) - 1) & (ulong.MaxValue << from);
            if ((Volatile.Read(ref bits[word]) & mask) != mask) Interlocked.Or(ref bits[word], mask);
            page += (ulong)(to - from + 1);
        }
    }

    /// <summary>
    /// Makes now the point "dirtied since" counts from: turns on KVM's dirty log for every RAM slot
    /// (KVM_MEM_LOG_DIRTY_PAGES) the first time, and forgets what was written before. Call while the VM is paused
    /// (or has not run). Needs <see cref="RegisterWith"/> first.
    /// </summary>
    public void StartDirtyTracking()
    {
        lock (_trackingLock)
        {
            var vm = _kvm ?? throw new InvalidOperationException("Guest memory is not registered with a KVM VM.");
            if (!DirtyTracking)
            {
                // Changing only the flags of an existing slot: KVM keeps the mapping and starts an empty dirty bitmap.
                foreach (var r in _regions) Kvm.SetUserMemoryRegion(vm, SlotOf(r, KvmConstants.KVM_MEM_LOG_DIRTY_PAGES));
                DirtyTracking = true;
            }
            HarvestCore(vm); // discards what was logged or marked before now
        }
    }

    /// <summary>
    /// The pages dirtied since the last harvest (or <see cref="StartDirtyTracking"/>): KVM's dirty log of every slot
    /// (KVM_GET_DIRTY_LOG or the dirty rings, <see cref="ISlotDirtyLog"/>, which also reset it) ∪ the pages devices wrote. Call only while the VM is paused and its
    /// devices quiescent: a device marks a page when it takes the span, before it writes.
    /// </summary>
    public GuestPageBitmap HarvestDirtyPages() => HarvestDirtyPages(null);

    /// <summary>
    /// As <see cref="HarvestDirtyPages()"/>, and the pages devices wrote are also added to <paramref name="deviceWritten"/>.
    /// Live migration harvests while the VM runs: a device marks a page before it writes it, so a page harvested then
    /// may still change without being marked again. The caller keeps those pages and sends them again once paused.
    /// </summary>
    public GuestPageBitmap HarvestDirtyPages(GuestPageBitmap? deviceWritten)
    {
        lock (_trackingLock)
        {
            if (!DirtyTracking || _kvm is null) throw new InvalidOperationException("Dirty page tracking has not been started.");
            return HarvestCore(_kvm, deviceWritten);
        }
    }

    private GuestPageBitmap HarvestCore(KvmVmHandle vm, GuestPageBitmap? deviceWritten = null)
    {
        var result = new GuestPageBitmap(PageCount);
        for (int i = 0; i < _regions.Length; i++)
        {
            var r = _regions[i];
            if (DirtyTracking)
            {
                var log = new ulong[GuestPageBitmap.WordsFor(r.SizeBytes / MemoryLayout.PageSize)];
                _dirtyLog!.Take(r.Slot, log);
                result.UnionWith(_firstPage[i], log);
            }
            var written = _written[i];
            var taken = new ulong[written.Length];
            for (int w = 0; w < written.Length; w++) taken[w] = Volatile.Read(ref written[w]) == 0 ? 0 : Interlocked.Exchange(ref written[w], 0);
            result.UnionWith(_firstPage[i], taken);
            deviceWritten?.UnionWith(_firstPage[i], taken);
        }
        return result;
    }

    /// <summary>
    /// Pages that may hold data: those the process has touched (present in RAM or swapped out, from
    /// /proc/self/pagemap). A page of an anonymous mapping never touched reads as zero without being there, so a full
    /// snapshot need not read it. Over a memory file (<see cref="MappedFromFile"/>) every page may hold data.
    /// </summary>
    public GuestPageBitmap PagesThatMayHoldData()
    {
        if (SharedMemoryFiles is { } files) return PagesWithDataIn(files);
        var result = new GuestPageBitmap(PageCount);
        if (MappedFromFile) { result.AddRange(0, PageCount); return result; }
        try
        {
            var (pagemap, owned) = ProcessPagemap.Acquire();
            using var disposeIfOwned = owned ? pagemap : null;
            const int EntriesPerRead = 8192;
            var entries = new ulong[EntriesPerRead];
            for (int i = 0; i < _regions.Length; i++)
            {
                var r = _regions[i];
                ulong pages = r.SizeBytes / MemoryLayout.PageSize;
                ulong firstVirtualPage = (ulong)r.HostAddress / MemoryLayout.PageSize;
                for (ulong at = 0; at < pages; at += EntriesPerRead)
                {
                    int n = (int)Math.Min(EntriesPerRead, pages - at);
                    ProcessPagemap.Read(pagemap, firstVirtualPage + at, entries.AsSpan(0, n));
                    for (int e = 0; e < n; e++)
                        if ((entries[e] & (ProcessPagemap.Present | ProcessPagemap.Swapped)) != 0) result.Add(_firstPage[i] + at + (ulong)e);
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // No pagemap (a restricted /proc): every page may hold data; the writer then reads them all.
            result.Clear();
            result.AddRange(0, PageCount);
        }
        return result;
    }

    /// <summary>Keeps /proc/self/pagemap open for a jail (<see cref="ProcessPagemap.KeepOpen"/>): without it a jailed VMM's
    /// every full snapshot and migration would read (and send) every page of guest RAM.</summary>
    public static void KeepPagemapOpen() => ProcessPagemap.KeepOpen();
}
