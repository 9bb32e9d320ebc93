using KvmPS.Interop;

namespace KvmPS.Devices.Display;

/// <summary>
/// Where the framebuffer appears in the guest: a KVM memory slot over the VRAM's host mapping, with dirty logging, so
/// the guest writes pixels natively (no exits) and the display learns which pages changed.
/// </summary>
public interface IVramSlot
{
    /// <summary>Maps the VRAM at <paramref name="guestAddress"/>, or removes the slot (null). Moving deletes, then adds.</summary>
    void MapAt(ulong? guestAddress);
    /// <summary>
    /// The pages written since the last call (KVM_GET_DIRTY_LOG, which resets the log, plus what a slot deleted since
    /// then had logged), one bit per page; false when there is nothing to report (not mapped, nothing pending).
    /// </summary>
    bool TakeDirtyLog(Span<ulong> bitmap);
}

/// <summary>The framebuffer's host memory: an anonymous, page-aligned mapping (zero until written; never swapped to a file).</summary>
public sealed unsafe class Vram : IDisposable
{
    public const int PageSize = 4096;
    public nint Address { get; private set; }
    public long SizeBytes { get; }
    public int PageCount => (int)(SizeBytes / PageSize);

    public Vram(long sizeBytes)
    {
        if (sizeBytes <= 0 || sizeBytes % PageSize != 0) throw new ArgumentOutOfRangeException(nameof(sizeBytes), $"VRAM size {sizeBytes} is not a positive multiple of {PageSize}.");
        SizeBytes = sizeBytes;
        nint p = Libc.Mmap(0, (nuint)sizeBytes, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_PRIVATE | Libc.MAP_ANONYMOUS | Libc.MAP_NORESERVE, -1, 0);
        if (p == Libc.MAP_FAILED) throw NativeCallException.FromLastError("mmap (VRAM)");
        Address = p;
    }

    public Span<byte> Bytes => Address == 0 ? throw new ObjectDisposedException(nameof(Vram)) : new Span<byte>((void*)Address, checked((int)SizeBytes));

    public void Dispose()
    {
        if (Address == 0) return;
        Libc.Munmap(Address, (nuint)SizeBytes);
        Address = 0;
    }
}

/// <summary>
/// The VRAM slot in a KVM VM. Slot changes come from vCPU threads (the guest moves BAR 0 or turns memory decoding
/// off), restore and teardown; the dirty log is read by viewers on their own threads: one lock orders them, so a
/// log is never read from a slot being replaced.
/// </summary>
public sealed class KvmVramSlot(KvmVmHandle vm, KvmPS.Vm.ISlotDirtyLog dirtyLog, uint slot, Vram vram) : IVramSlot
{
    private readonly object _lock = new();
    private ulong? _mappedAt;
    /// <summary>The log of a slot deleted since the last <see cref="TakeDirtyLog"/>: KVM drops it with the slot.</summary>
    private readonly ulong[] _pending = new ulong[(vram.PageCount + 63) / 64];
    private bool _hasPending;

    public uint Slot => slot;

    public void MapAt(ulong? guestAddress)
    {
        lock (_lock)
        {
            if (guestAddress == _mappedAt) return;
            var region = new kvm_userspace_memory_region { slot = slot, flags = KvmConstants.KVM_MEM_LOG_DIRTY_PAGES, userspace_addr = (ulong)vram.Address };
            if (_mappedAt is not null)
            {
                // What the guest wrote before the move must still reach the viewers.
                var log = new ulong[_pending.Length];
                dirtyLog.Take(slot, log);
                for (int i = 0; i < log.Length; i++) _pending[i] |= log[i];
                _hasPending = true;
                region.memory_size = 0; // size 0 deletes the slot
                Kvm.SetUserMemoryRegion(vm, region);
                _mappedAt = null;
            }
            if (guestAddress is ulong at)
            {
                region.guest_phys_addr = at;
                region.memory_size = (ulong)vram.SizeBytes;
                Kvm.SetUserMemoryRegion(vm, region);
                _mappedAt = at;
            }
        }
    }

    public bool TakeDirtyLog(Span<ulong> bitmap)
    {
        lock (_lock)
        {
            if (_mappedAt is null && !_hasPending) return false;
            if (_mappedAt is null) bitmap.Clear();
            else dirtyLog.Take(slot, bitmap);
            if (_hasPending)
            {
                for (int i = 0; i < _pending.Length && i < bitmap.Length; i++) bitmap[i] |= _pending[i];
                Array.Clear(_pending);
                _hasPending = false;
            }
            return true;
        }
    }
}
