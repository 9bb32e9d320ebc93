using KvmPS.Interop;

namespace KvmPS.Vm;

/// <summary>
/// Which pages of a KVM memory slot (with KVM_MEM_LOG_DIRTY_PAGES) the vCPUs wrote since the last call: from KVM's
/// per-slot bitmap (<see cref="BitmapDirtyLog"/>) or from the vCPUs' dirty rings (<see cref="DirtyRings"/>). Guest
/// RAM harvests (snapshots, migration) and the display's framebuffer slot read it the same way.
/// </summary>
public interface ISlotDirtyLog
{
    /// <summary>Overwrites <paramref name="bitmap"/> (one bit per page of the slot) with the pages written since the last take, and forgets them.</summary>
    void Take(uint slot, Span<ulong> bitmap);
}

/// <summary>KVM_GET_DIRTY_LOG: KVM keeps a bitmap per slot and re-protects the pages as it hands it over.</summary>
public sealed class BitmapDirtyLog(KvmVmHandle vm) : ISlotDirtyLog
{
    public void Take(uint slot, Span<ulong> bitmap) => Kvm.GetDirtyLog(vm, slot, bitmap);
}

/// <summary>
/// KVM's dirty ring (KVM_CAP_DIRTY_LOG_RING, docs/vmm.md "dirty_ring_entries"): each vCPU pushes the pages it makes
/// dirty into a ring shared with this process, and a harvest costs the pages written, not a scan of every slot's
/// bitmap (QEMU's <c>dirty-ring-size</c>). Entries are collected into per-slot bitmaps here, marked for reset, and
/// KVM_RESET_DIRTY_RINGS write-protects those pages again. Must be enabled before the first vCPU exists; every vCPU's
/// ring is added as it is created. A vCPU whose ring is full exits (KVM_EXIT_DIRTY_RING_FULL) and collects.
/// </summary>
public sealed unsafe class DirtyRings : ISlotDirtyLog, IDisposable
{
    /// <summary>What <c>dirty_ring_entries</c> may be: a power of two in this range (QEMU's bounds).</summary>
    public const int MinEntries = 1024, MaxEntries = 65536;

    private sealed class Ring(nint address, int entries)
    {
        public readonly kvm_dirty_gfn* Entries = (kvm_dirty_gfn*)address;
        public readonly nint Address = address;
        public readonly int Count = entries;
        public uint Fetch; // next entry to look at (free-running; index modulo Count)
    }

    private readonly KvmVmHandle _vm;
    private readonly int _entries;
    private readonly object _lock = new();
    private readonly List<Ring> _rings = [];
    private readonly Dictionary<uint, ulong[]> _pending = [];
    private bool _disposed;

    public int EntriesPerVcpu => _entries;
    public long Collected { get; private set; }

    private DirtyRings(KvmVmHandle vm, int entries) { _vm = vm; _entries = entries; }

    /// <summary>Turns the dirty ring on for <paramref name="vm"/> (no vCPU may exist yet).</summary>
    /// <exception cref="DirtyRingException">This host's KVM has no dirty ring, or not of this size.</exception>
    public static DirtyRings Enable(KvmVmHandle vm, int entries)
    {
        if (entries < MinEntries || entries > MaxEntries || (entries & (entries - 1)) != 0)
            throw new DirtyRingException($"dirty_ring_entries {entries}: must be a power of two from {MinEntries} to {MaxEntries}");
        var (capability, maxBytes) = Kvm.DirtyRingSupport(vm);
        int bytes = entries * sizeof(kvm_dirty_gfn);
        if (maxBytes <= 0) throw new DirtyRingException("this host's KVM has no dirty ring (KVM_CAP_DIRTY_LOG_RING); leave dirty_ring_entries unset to use the dirty bitmap");
        if (bytes > maxBytes) throw new DirtyRingException($"dirty_ring_entries {entries}: this host's KVM allows at most {maxBytes / sizeof(kvm_dirty_gfn)}");
        try { Kvm.EnableCap(vm, (uint)capability, (ulong)bytes); }
        catch (NativeCallException e) { throw new DirtyRingException($"KVM refused a dirty ring of {entries} entries: {e.Message}"); }
        return new DirtyRings(vm, entries);
    }

    /// <summary>Maps the ring of a vCPU just created.</summary>
    public void Add(KvmVcpuHandle vcpu)
    {
        nint address = Kvm.MapDirtyRing(vcpu, _entries * sizeof(kvm_dirty_gfn));
        lock (_lock) _rings.Add(new Ring(address, _entries));
    }

    public void Take(uint slot, Span<ulong> bitmap)
    {
        lock (_lock)
        {
            CollectLocked();
            bitmap.Clear();
            if (!_pending.TryGetValue(slot, out var pending)) return;
            int n = Math.Min(pending.Length, bitmap.Length);
            pending.AsSpan(0, n).CopyTo(bitmap);
            // A page beyond the caller's bitmap cannot be in the slot it knows (the slot was replaced by a smaller one).
            _pending.Remove(slot);
        }
    }

    /// <summary>A vCPU's ring is full (KVM_EXIT_DIRTY_RING_FULL): collect every ring, so KVM lets the vCPU run again.</summary>
    public void CollectFull()
    {
        lock (_lock) CollectLocked();
    }

    private void CollectLocked()
    {
        if (_disposed) return;
        long taken = 0;
        foreach (var ring in _rings)
        {
            while (true)
            {
                var entry = ring.Entries + (ring.Fetch & (uint)(ring.Count - 1));
                // Acquire: the slot and offset KVM wrote before setting DIRTY are read after it.
                if ((Volatile.Read(ref entry->flags) & KvmConstants.KVM_DIRTY_GFN_F_DIRTY) == 0) break;
                Mark(entry->slot & 0xffff, entry->offset);
                Volatile.Write(ref entry->flags, KvmConstants.KVM_DIRTY_GFN_F_RESET); // release: the entry is ours no more
                ring.Fetch++;
                taken++;
            }
        }
        if (taken == 0) return;
        Collected += taken;
        Kvm.ResetDirtyRings(_vm);
    }

    private void Mark(uint slot, ulong page)
    {
        if (page >= 1UL << 28) return; // beyond 1 TiB: no slot of ours; ignore rather than allocate
        int word = (int)(page >> 6);
        if (!_pending.TryGetValue(slot, out var bits) || bits.Length <= word)
        {
            var grown = new ulong[Math.Max(word + 1, (bits?.Length ?? 0) * 2)];
            bits?.CopyTo(grown, 0);
            _pending[slot] = bits = grown;
        }
        bits[word] |= 1UL << (int)(page & 63);
    }

    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
            foreach (var ring in _rings) Libc.Munmap(ring.Address, (nuint)(ring.Count * sizeof(kvm_dirty_gfn)));
            _rings.Clear();
        }
    }
}

/// <summary>The dirty ring cannot be used as configured; the message names the setting.</summary>
public sealed class DirtyRingException(string message) : Exception(message);
