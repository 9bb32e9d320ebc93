using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using KvmPS.Interop;
using KvmPS.Vm;

namespace KvmPS.Vmm;

/// <summary>
/// Once a VM has run for a moment, drops from this process's page tables the pages of the read-only segments of its
/// loaded ELF objects (kvmps-vmm, libc, the loader): code, read-only data, unwind tables. Start-up runs once and
/// touches most of the binary (a 64 KiB fault-around per fault, and this host's kernel maps whole large folios of the
/// page cache), and those mappings otherwise stay in the VMM's RSS for its life while an idle VM uses almost none of
/// them. The pages stay in the page cache, shared by every process of the binary; what the VMM runs again is faulted
/// back in. Written pages are never dropped: writable segments and each object's RELRO part (relocated at load, then
/// made read-only) are left out, and of the rest only pages pagemap shows as the file's own (docs/benchmarks.md,
/// figure 3).
/// </summary>
public static unsafe class StartupPages
{
    /// <summary>How long a VM runs before the drop: past its first guest output and its first control requests.</summary>
    public static readonly TimeSpan Delay = TimeSpan.FromSeconds(1);

    public readonly record struct Range(nuint Start, nuint Length);

    /// <summary>Page-aligned ranges of the loaded objects' read-only segments, without RELRO; the vDSO is skipped.</summary>
    public static List<Range> ReadOnlySegments()
    {
        // The callback runs under the loader's lock: it allocates nothing (no collection can start in it).
        const int Capacity = 256;
        var buffer = new Range[Capacity];
        fixed (Range* ranges = buffer)
        {
            var collector = new Collector { Ranges = ranges, Capacity = Capacity };
            Libc.DlIteratePhdr(&CollectObject, &collector);
            return [.. buffer.AsSpan(0, collector.Count)];
        }
    }

    private struct Collector
    {
        public Range* Ranges;
        public int Capacity, Count;
    }

    /// <summary>
    /// Advises MADV_DONTNEED on the pages of <see cref="ReadOnlySegments"/> that are in RAM and still the file's
    /// (/proc/self/pagemap): a page the process wrote is its own copy, and dropping it would bring back the file's
    /// bytes. Read-only segments do get written: the NativeAOT runtime caches configuration values in kvmps-vmm's
    /// .rodata (it makes the page writable for it). Returns the bytes dropped; nothing when pagemap cannot be read.
    /// A write between the pagemap read and the drop would be lost; that runtime write happens during start-up, a
    /// second before, and no other code writes a read-only segment.
    /// </summary>
    public static ulong Release()
    {
        Range[] runs;
        try { runs = MappedFilePageRuns(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return 0; }
        // Only this loop runs between the first drop and the wait that follows: code run after a drop is faulted back.
        ulong dropped = 0;
        for (int i = 0; i < runs.Length; i++)
            if (Libc.Madvise((nint)runs[i].Start, runs[i].Length, Libc.MADV_DONTNEED) == 0) dropped += runs[i].Length;
        return dropped;
    }

    /// <summary>The runs of pages of <see cref="ReadOnlySegments"/> that are in RAM and still the file's.</summary>
    private static Range[] MappedFilePageRuns()
    {
        var (pagemap, owned) = ProcessPagemap.Acquire();
        using var disposeIfOwned = owned ? pagemap : null;
        nuint page = (nuint)Environment.SystemPageSize;
        var runs = new List<Range>();
        foreach (var range in ReadOnlySegments())
        {
            var entries = new ulong[(int)(range.Length / page)];
            ProcessPagemap.Read(pagemap, (ulong)(range.Start / page), entries);
            for (int i = 0; i < entries.Length;)
            {
                if (!IsMappedFilePage(entries[i])) { i++; continue; }
                int end = i;
                while (end < entries.Length && IsMappedFilePage(entries[end])) end++;
                runs.Add(new Range(range.Start + (nuint)i * page, (nuint)(end - i) * page));
                i = end;
            }
        }
        return [.. runs];
    }

    private static bool IsMappedFilePage(ulong entry) =>
        (entry & (ProcessPagemap.Present | ProcessPagemap.FileOrSharedAnonymous)) == (ProcessPagemap.Present | ProcessPagemap.FileOrSharedAnonymous);

    /// <summary>How long the control socket stays quiet after a request before the pages are dropped again.</summary>
    public static readonly TimeSpan IdleDelay = TimeSpan.FromSeconds(1);

    // Signalled after each control request (NoteActivity); made once and kept for the process's life, so a control
    // thread can never write to a descriptor that was closed and its number reused.
    private static EventFdHandle? s_activity;

    /// <summary>
    /// A control request has run: it faulted back code the drop took out (System.Text.Json, the socket paths; whole
    /// large folios of the page cache per fault on this host, 3.5 MiB for one <c>status</c>). The waiting main thread
    /// drops the pages again once no request has come for <see cref="IdleDelay"/>. No-op before the first drop.
    /// </summary>
    public static void NoteActivity()
    {
        try { Volatile.Read(ref s_activity)?.Signal(); }
        catch (NativeCallException) { } // an eventfd write does not fail; if it did, the pages would only stay longer
    }

    /// <summary>
    /// <see cref="Release"/>, then waits for <paramref name="machine"/> to end, blocked in poll(2) on an eventfd the
    /// thread that ends it signals: a managed wait would run the task machinery's code, which the release just
    /// dropped, and fault it back in (whole large folios of the page cache on this host, 128 KiB and more a fault).
    /// Control requests in between (<see cref="NoteActivity"/>) are followed by another release once they stop.
    /// </summary>
    public static void ReleaseThenWait(VirtualMachine machine)
    {
        using var ended = EventFdHandle.Create(nonBlocking: false);
        var activity = Volatile.Read(ref s_activity);
        if (activity is null)
        {
            // One for the process: in-process hosts (tests) may get here at once, and a second one would go unsignalled.
            var made = EventFdHandle.Create(nonBlocking: true);
            activity = Interlocked.CompareExchange(ref s_activity, made, null) ?? made;
            if (activity != made) made.Dispose();
        }
        machine.SignalOnExit(ended);
        Release();
        int idleMs = (int)IdleDelay.TotalMilliseconds;
        bool requestsSinceRelease = false;
        while (ended.WaitForEither(activity, requestsSinceRelease ? idleMs : -1) is (bool end, bool request))
        {
            if (end) break;
            if (request) { activity.Consume(); requestsSinceRelease = true; }
            else if (requestsSinceRelease) { Release(); requestsSinceRelease = false; } // a quiet second (or EINTR: early, harmless)
        }
        // poll failing for good (null above) only ends the drops: the end is still read, blocking.
        // Until the one signal is read (0 on EINTR): only then is the eventfd no longer the signaller's to write.
        while (ended.Consume() == 0) { }
    }

    [UnmanagedCallersOnly]
    private static int CollectObject(Libc.DlPhdrInfo* info, nuint size, void* data)
    {
        var collector = (Collector*)data;
        var name = info->dlpi_name is null ? default : MemoryMarshal.CreateReadOnlySpanFromNullTerminated(info->dlpi_name);
        if (name.IndexOf("linux-vdso"u8) >= 0 || name.IndexOf("linux-gate"u8) >= 0) return 0;
        nuint page = (nuint)Environment.SystemPageSize;
        nuint relroStart = 0, relroEnd = 0;
        for (int i = 0; i < info->dlpi_phnum; i++)
        {
            var ph = info->dlpi_phdr[i];
            if (ph.p_type != Libc.PT_GNU_RELRO) continue;
            relroStart = AlignDown(info->dlpi_addr + (nuint)ph.p_vaddr, page);
            relroEnd = AlignUp(info->dlpi_addr + (nuint)(ph.p_vaddr + ph.p_memsz), page);
        }
        for (int i = 0; i < info->dlpi_phnum; i++)
        {
            var ph = info->dlpi_phdr[i];
            if (ph.p_type != Libc.PT_LOAD || (ph.p_flags & Libc.PF_W) != 0 || ph.p_memsz == 0) continue;
            // Inward to whole pages: a page the segment shares with a writable neighbour is left alone.
            nuint start = AlignUp(info->dlpi_addr + (nuint)ph.p_vaddr, page);
            nuint end = AlignDown(info->dlpi_addr + (nuint)(ph.p_vaddr + ph.p_filesz), page);
            if (relroEnd > relroStart && start < relroEnd && relroStart < end)
            {
                AddRange(collector, start, relroStart);
                AddRange(collector, relroEnd, end);
            }
            else AddRange(collector, start, end);
        }
        return 0;
    }

    private static void AddRange(Collector* collector, nuint start, nuint end)
    {
        if (end > start && collector->Count < collector->Capacity) collector->Ranges[collector->Count++] = new Range(start, end - start);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static nuint AlignUp(nuint value, nuint page) => (value + page - 1) & ~(page - 1);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static nuint AlignDown(nuint value, nuint page) => value & ~(page - 1);
}
