using KvmPS.Interop;

namespace KvmPS.Devices.Passthrough;

/// <summary>
/// A KVM memory slot over a mapped BAR area (no dirty logging: device memory is not guest RAM), placed and moved
/// like the display's framebuffer slot (docs/display.md): delete at the old address, create at the new one.
/// </summary>
public sealed class KvmGuestMemorySlot(KvmVmHandle vm, uint slot, nint host, ulong size) : IGuestMemorySlot
{
    private readonly object _lock = new();
    private ulong? _mappedAt;

    public uint Slot => slot;

    public void MapAt(ulong? guestAddress)
    {
        lock (_lock)
        {
            if (guestAddress == _mappedAt) return;
            var region = new kvm_userspace_memory_region { slot = slot, userspace_addr = (ulong)host };
            if (_mappedAt is not null)
            {
                region.memory_size = 0; // size 0 deletes the slot
                Kvm.SetUserMemoryRegion(vm, region);
                _mappedAt = null;
            }
            if (guestAddress is ulong at)
            {
                region.guest_phys_addr = at;
                region.memory_size = size;
                Kvm.SetUserMemoryRegion(vm, region); // EEXIST over RAM or another slot: the caller leaves the area trapped
                _mappedAt = at;
            }
        }
    }

    public void Dispose()
    {
        try { MapAt(null); } catch (IOException) { } // the VM may be closed already
    }
}
