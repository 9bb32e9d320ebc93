using System.Buffers.Binary;
using System.Runtime.InteropServices;
using KvmPS.Interop;

namespace KvmPS.Vm;

/// <summary>How guest RAM is backed on the host (the seeds' hugepage, KSM and NUMA options).</summary>
public enum HugePageMode { None, TransparentHugePages, HugeTlbFs }

public sealed record GuestMemoryOptions
{
    public HugePageMode HugePages { get; init; } = HugePageMode.None;
    /// <summary>Marks guest RAM MADV_MERGEABLE so KSM can share identical pages across VMs.</summary>
    public bool Ksm { get; init; }
    /// <summary>Host NUMA node to bind guest RAM to (mbind MPOL_BIND), or null for the default policy.</summary>
    public int? NumaNode { get; init; }
    /// <summary>Guest RAM in memfds mapped MAP_SHARED (not anonymous memory), so a local live upgrade can pass it to the new VMM instead of copying it.</summary>
    public bool Memfd { get; init; }
}

/// <summary>
/// One contiguous range of guest RAM backed by one host mapping and one KVM memory slot. <paramref name="Hotplug"/>:
/// the virtio-mem region (Devices/Virtio/Mem), not boot RAM and not in the e820 map; the guest uses the blocks the
/// device has plugged.
/// </summary>
public sealed record GuestMemoryRegion(ulong GuestAddress, ulong SizeBytes, nint HostAddress, uint Slot, bool Hotplug = false)
{
    public ulong EndAddress => GuestAddress + SizeBytes;
    public bool Contains(ulong gpa) => gpa >= GuestAddress && gpa < EndAddress;
}

/// <summary>Guest memory too large, or an access outside guest RAM.</summary>
public sealed class GuestMemoryException : Exception
{
    public GuestMemoryException(string message, Exception? inner = null) : base(message, inner) { }
}

/// <summary>
/// Guest RAM: anonymous host mappings (MAP_NORESERVE, so untouched memory costs nothing) split around the
/// 32-bit MMIO hole, plus the hot-plug region when the VM has a maximum above its boot memory. Every access is bounds-checked: a guest-supplied address can never reach host memory
/// outside these mappings. Writers take <see cref="GetWritableSpan"/> (or Write*/Fill), which records the pages
/// as written by the VMM (KVM's dirty log does not see those writes; see GuestMemoryDirtyPages.cs); readers take
/// <see cref="GetReadOnlySpan"/>.
/// </summary>
public sealed unsafe partial class GuestMemory : IDisposable
{
    private readonly GuestMemoryRegion[] _regions;
    private bool _disposed;

    /// <summary>Every mapped byte: boot RAM plus the hot-plug region (the snapshot memory file's length).</summary>
    public ulong SizeBytes { get; }
    /// <summary>RAM the guest boots with (the e820 RAM map); without a hot-plug region the same as <see cref="SizeBytes"/>.</summary>
    public ulong BootRamBytes => SizeBytes - (HotplugRegion?.SizeBytes ?? 0);
    public IReadOnlyList<GuestMemoryRegion> Regions => _regions;
    /// <summary>The regions of boot RAM (what the e820 map reports as RAM).</summary>
    public IEnumerable<GuestMemoryRegion> BootRegions => _regions.Where(r => !r.Hotplug);
    /// <summary>The virtio-mem region, or null.</summary>
    public GuestMemoryRegion? HotplugRegion => _regions.FirstOrDefault(r => r.Hotplug);
    public GuestMemoryOptions Options { get; }

    private GuestMemory(GuestMemoryRegion[] regions, ulong sizeBytes, GuestMemoryOptions options)
    {
        _regions = regions;
        SizeBytes = sizeBytes;
        Options = options;
        _written = regions.Select(r => new ulong[(r.SizeBytes / MemoryLayout.PageSize + 63) / 64]).ToArray();
        _firstPage = new ulong[regions.Length];
        for (int i = 1; i < regions.Length; i++) _firstPage[i] = _firstPage[i - 1] + regions[i - 1].SizeBytes / MemoryLayout.PageSize;
    }

    /// <summary>
    /// Maps <paramref name="sizeBytes"/> of RAM laid out as in docs/guest-layout.md (RAM above 3 GiB continues at 4 GiB),
    /// and a hot-plug region of <paramref name="hotplugBytes"/> at <see cref="MemoryLayout.HotplugRegionStart"/> (0: none).
    /// The hot-plug region is never reserved (MAP_NORESERVE even with hugetlbfs boot RAM, transparent huge pages
    /// instead): unplugged blocks must cost nothing and give memory back when discarded.
    /// </summary>
    public static GuestMemory Create(ulong sizeBytes, GuestMemoryOptions? options = null, ulong hotplugBytes = 0, ulong hotplugLowLimit = MemoryLayout.MmioHoleStart)
    {
        options ??= new GuestMemoryOptions();
        if (sizeBytes < MemoryLayout.MinimumRamBytes)
            throw new GuestMemoryException($"Guest memory of {sizeBytes >> 20} MiB is too small: at least {MemoryLayout.MinimumRamBytes >> 20} MiB is needed.");
        if (sizeBytes % MemoryLayout.PageSize != 0)
            throw new GuestMemoryException($"Guest memory size {sizeBytes} is not a multiple of the 4 KiB page size.");
        if (options.HugePages == HugePageMode.HugeTlbFs && sizeBytes % MemoryLayout.HugePageSize != 0)
            throw new GuestMemoryException($"Guest memory size {sizeBytes >> 20} MiB is not a multiple of the 2 MiB huge page size required by hugetlbfs backing.");

        if (hotplugBytes % MemoryLayout.HugePageSize != 0)
            throw new GuestMemoryException($"Hot-plug memory of {hotplugBytes} bytes is not a multiple of 2 MiB.");

        var ranges = new List<(ulong Gpa, ulong Size, bool Hotplug)>();
        ulong low = Math.Min(sizeBytes, MemoryLayout.MmioHoleStart);
        ranges.Add((0, low, false));
        if (sizeBytes > low) ranges.Add((MemoryLayout.HighRamStart, sizeBytes - low, false));
        if (hotplugBytes > 0) ranges.Add((MemoryLayout.HotplugRegionStart(sizeBytes, hotplugBytes, hotplugLowLimit), hotplugBytes, true));

        var regions = new List<GuestMemoryRegion>();
        var memfds = new MemfdHandle?[ranges.Count];
        try
        {
            foreach (var (gpa, size, hotplug) in ranges)
            {
                var regionOptions = hotplug && options.HugePages == HugePageMode.HugeTlbFs ? options with { HugePages = HugePageMode.TransparentHugePages } : options;
                nint host = options.Memfd ? MapMemfd(size, regionOptions, regions.Count, out memfds[regions.Count]) : MapAnonymous(size, regionOptions);
                regions.Add(new GuestMemoryRegion(gpa, size, host, (uint)regions.Count, hotplug));
            }
        }
        catch
        {
            foreach (var r in regions) Libc.Munmap(r.HostAddress, (nuint)r.SizeBytes);
            foreach (var fd in memfds) fd?.Dispose();
            throw;
        }
        return new GuestMemory(regions.ToArray(), sizeBytes + hotplugBytes, options) { _memfds = options.Memfd ? memfds : null };
    }

    private static nint MapAnonymous(ulong size, GuestMemoryOptions options) => MapAndAdvise(size, options, -1);

    private static nint MapAndAdvise(ulong size, GuestMemoryOptions options, int memfd)
    {
        int flags = memfd >= 0 ? Libc.MAP_SHARED : Libc.MAP_PRIVATE | Libc.MAP_ANONYMOUS;
        // Huge pages are reserved at mmap time (no MAP_NORESERVE): a shortfall must fail here, not as a SIGBUS
        // when the guest first touches a page. Normal pages are not reserved: untouched guest RAM costs nothing.
        if (memfd < 0) flags |= options.HugePages == HugePageMode.HugeTlbFs ? Libc.MAP_HUGETLB : Libc.MAP_NORESERVE;
        nint p = Libc.Mmap(0, (nuint)size, Libc.PROT_READ | Libc.PROT_WRITE, flags, memfd, 0);
        if (p == Libc.MAP_FAILED)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw new GuestMemoryException(
                $"Cannot map {size >> 20} MiB of guest memory{(options.HugePages == HugePageMode.HugeTlbFs ? " from hugetlbfs (are enough huge pages reserved in /proc/sys/vm/nr_hugepages?)" : "")}: {Libc.ErrorText(errno)}",
                new NativeCallException("mmap", errno));
        }
        try
        {
            // Guest RAM in a core dump is the guest's data, not ours.
            Libc.Madvise(p, (nuint)size, Libc.MADV_DONTDUMP);
            if (options.HugePages == HugePageMode.TransparentHugePages && Libc.Madvise(p, (nuint)size, Libc.MADV_HUGEPAGE) != 0)
                throw new GuestMemoryException($"madvise(MADV_HUGEPAGE) failed: {Libc.ErrorText(Marshal.GetLastPInvokeError())} (is transparent_hugepage disabled?)");
            if (options.Ksm && Libc.Madvise(p, (nuint)size, Libc.MADV_MERGEABLE) != 0)
                throw new GuestMemoryException($"madvise(MADV_MERGEABLE) failed: {Libc.ErrorText(Marshal.GetLastPInvokeError())} (is the kernel built with CONFIG_KSM?)");
            if (options.NumaNode is int node)
            {
                if (node < 0 || node >= 64) throw new GuestMemoryException($"NUMA node {node} is out of range (0-63).");
                ulong mask = 1UL << node;
                if (Libc.Mbind(p, (nuint)size, Libc.MPOL_BIND, &mask, 64, Libc.MPOL_MF_STRICT | Libc.MPOL_MF_MOVE) != 0)
                    throw new GuestMemoryException($"Cannot bind guest memory to NUMA node {node}: {Libc.ErrorText(Marshal.GetLastPInvokeError())}");
            }
        }
        catch
        {
            Libc.Munmap(p, (nuint)size);
            throw;
        }
        return p;
    }

    /// <summary>
    /// Registers every region as a KVM memory slot, without dirty logging until <see cref="StartDirtyTracking"/>, or
    /// with it from the start (<paramref name="logDirtyPages"/>; <see cref="StartDirtyTracking"/> then changes no slot).
    /// </summary>
    public void RegisterWith(KvmVmHandle vm, bool logDirtyPages = false, ISlotDirtyLog? dirtyLog = null)
    {
        foreach (var r in _regions) Kvm.SetUserMemoryRegion(vm, SlotOf(r, logDirtyPages ? KvmConstants.KVM_MEM_LOG_DIRTY_PAGES : 0));
        _kvm = vm;
        _dirtyLog = dirtyLog ?? new BitmapDirtyLog(vm);
        DirtyTracking = logDirtyPages;
    }

    private static kvm_userspace_memory_region SlotOf(GuestMemoryRegion r, uint flags) => new()
    {
        slot = r.Slot,
        flags = flags,
        guest_phys_addr = r.GuestAddress,
        memory_size = r.SizeBytes,
        userspace_addr = (ulong)r.HostAddress,
    };

    /// <summary>Region containing <paramref name="gpa"/>, or null (at most two regions: no search structure needed).</summary>
    public GuestMemoryRegion? FindRegion(ulong gpa)
    {
        foreach (var r in _regions) if (r.Contains(gpa)) return r;
        return null;
    }

    /// <summary>True when [gpa, gpa+length) lies inside one region.</summary>
    public bool IsValidRange(ulong gpa, ulong length)
    {
        var r = FindRegion(gpa);
        return r is not null && length <= r.EndAddress - gpa;
    }

    private GuestMemoryRegion CheckedRegion(ulong gpa, int length, out int index)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (length < 0) throw new GuestMemoryException($"Negative length {length} at guest address 0x{gpa:x}.");
        var r = FindRegionIndex(gpa, out index);
        if (r is null || (ulong)length > r.EndAddress - gpa)
            throw new GuestMemoryException($"Guest range 0x{gpa:x}+{length} is outside guest RAM.");
        return r;
    }

    private GuestMemoryRegion? FindRegionIndex(ulong gpa, out int index)
    {
        for (index = 0; index < _regions.Length; index++) if (_regions[index].Contains(gpa)) return _regions[index];
        return null;
    }

    /// <summary>A read-only host view of guest memory; throws if any byte of the range lies outside guest RAM.</summary>
    public ReadOnlySpan<byte> GetReadOnlySpan(ulong gpa, int length)
    {
        var r = CheckedRegion(gpa, length, out _);
        return new ReadOnlySpan<byte>((byte*)r.HostAddress + (gpa - r.GuestAddress), length);
    }

    /// <summary>
    /// A writable host view of guest memory; throws if any byte of the range lies outside guest RAM. The pages are
    /// recorded as written by the VMM (for diff snapshots and migration): take it only to write, and write before
    /// the VM is paused for a harvest (devices are quiescent then).
    /// </summary>
    public Span<byte> GetWritableSpan(ulong gpa, int length)
    {
        var r = CheckedRegion(gpa, length, out int index);
        MarkWritten(index, gpa - r.GuestAddress, (ulong)length);
        return new Span<byte>((byte*)r.HostAddress + (gpa - r.GuestAddress), length);
    }

    /// <summary>Non-throwing read-only view for paths that handle guest-supplied addresses (virtqueues).</summary>
    public bool TryGetReadOnlySpan(ulong gpa, int length, out ReadOnlySpan<byte> span)
    {
        var r = FindRegionIndex(gpa, out _);
        if (_disposed || length < 0 || r is null || (ulong)length > r.EndAddress - gpa) { span = default; return false; }
        span = new ReadOnlySpan<byte>((byte*)r.HostAddress + (gpa - r.GuestAddress), length);
        return true;
    }

    /// <summary>Non-throwing writable view for guest-supplied addresses; marks the pages like <see cref="GetWritableSpan"/>.</summary>
    public bool TryGetWritableSpan(ulong gpa, int length, out Span<byte> span)
    {
        var r = FindRegionIndex(gpa, out int index);
        if (_disposed || length < 0 || r is null || (ulong)length > r.EndAddress - gpa) { span = default; return false; }
        MarkWritten(index, gpa - r.GuestAddress, (ulong)length);
        span = new Span<byte>((byte*)r.HostAddress + (gpa - r.GuestAddress), length);
        return true;
    }

    public void Write(ulong gpa, ReadOnlySpan<byte> data) => data.CopyTo(GetWritableSpan(gpa, data.Length));
    public void Read(ulong gpa, Span<byte> destination) => GetReadOnlySpan(gpa, destination.Length).CopyTo(destination);
    public void Fill(ulong gpa, int length, byte value) => GetWritableSpan(gpa, length).Fill(value);

    public byte ReadByte(ulong gpa) => GetReadOnlySpan(gpa, 1)[0];
    public ushort ReadUInt16(ulong gpa) => BinaryPrimitives.ReadUInt16LittleEndian(GetReadOnlySpan(gpa, 2));
    public uint ReadUInt32(ulong gpa) => BinaryPrimitives.ReadUInt32LittleEndian(GetReadOnlySpan(gpa, 4));
    public ulong ReadUInt64(ulong gpa) => BinaryPrimitives.ReadUInt64LittleEndian(GetReadOnlySpan(gpa, 8));
    public void WriteByte(ulong gpa, byte v) => GetWritableSpan(gpa, 1)[0] = v;
    public void WriteUInt16(ulong gpa, ushort v) => BinaryPrimitives.WriteUInt16LittleEndian(GetWritableSpan(gpa, 2), v);
    public void WriteUInt32(ulong gpa, uint v) => BinaryPrimitives.WriteUInt32LittleEndian(GetWritableSpan(gpa, 4), v);
    public void WriteUInt64(ulong gpa, ulong v) => BinaryPrimitives.WriteUInt64LittleEndian(GetWritableSpan(gpa, 8), v);

    /// <summary>Gives the host back the pages of a guest range (balloon inflate); they read as zero when touched again.</summary>
    public void Discard(ulong gpa, ulong length)
    {
        var r = FindRegionIndex(gpa, out int index);
        if (r is null || length > r.EndAddress - gpa || gpa % MemoryLayout.PageSize != 0 || length % MemoryLayout.PageSize != 0)
            throw new GuestMemoryException($"Cannot discard guest range 0x{gpa:x}+0x{length:x}: not page-aligned guest RAM.");
        if (MemfdOf(index) is { } memfd) PunchHole(memfd, gpa - r.GuestAddress, length); // MADV_DONTNEED does not free shared memory
        else if (Libc.Madvise(r.HostAddress + (nint)(gpa - r.GuestAddress), (nuint)length, Libc.MADV_DONTNEED) != 0)
            throw NativeCallException.FromLastError("madvise(MADV_DONTNEED)");
        // The pages now read as zero (or, over a MAP_PRIVATE memory file, as the file): their content changed.
        MarkWritten(index, gpa - r.GuestAddress, length);
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var r in _regions) Libc.Munmap(r.HostAddress, (nuint)r.SizeBytes);
        if (_memfds is not null) foreach (var fd in _memfds) fd?.Dispose();
    }
}
