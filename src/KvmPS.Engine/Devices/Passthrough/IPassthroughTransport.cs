using System.Runtime.InteropServices;
using KvmPS.Interop;
using KvmPS.Vm;

namespace KvmPS.Devices.Passthrough;

/// <summary>
/// A passthrough device failed or refused: names the device (its socket or host address) and what went wrong. At
/// start-up the VMM refuses to start with it; at run time the device reads as all-ones and the VM keeps running.
/// </summary>
public sealed class PassthroughException(string device, string message, Exception? inner = null) : IOException($"{device}: {message}", inner)
{
    public string Device { get; } = device;
}

/// <summary>A passthrough device was asked to save its state or migrate: like real VFIO without migration support, it cannot.</summary>
public sealed class PassthroughNotMigratableException(string device)
    : InvalidOperationException($"{device}: a passthrough device has no migration support; snapshots and migration are refused while it is attached (remove it first)")
{
    public string Device { get; } = device;
}

/// <summary>What VFIO_DEVICE_GET_INFO reports.</summary>
public sealed record PassthroughDeviceInfo(uint Flags, int RegionCount, int IrqCount)
{
    public bool CanReset => (Flags & Vfio.VFIO_DEVICE_FLAGS_RESET) != 0;
    public bool IsPci => (Flags & Vfio.VFIO_DEVICE_FLAGS_PCI) != 0;
}

/// <summary>A part of a region the client may map (offset within the region, size).</summary>
public readonly record struct MmapArea(ulong Offset, ulong Size);

/// <summary>
/// One region (a BAR, the ROM, config space): its size, flags and the areas that can be mapped. <paramref name="MapFd"/>
/// (vfio-user: the fd the server sent; kernel VFIO: the device fd, not owned) is mapped at <paramref name="MapOffset"/>
/// plus an area's offset.
/// </summary>
public sealed record PassthroughRegion(int Index, uint Flags, ulong Size, ulong MapOffset, IReadOnlyList<MmapArea> Areas, SafeHandle? MapFd)
{
    public bool Readable => (Flags & Vfio.VFIO_REGION_INFO_FLAG_READ) != 0;
    public bool Writable => (Flags & Vfio.VFIO_REGION_INFO_FLAG_WRITE) != 0;
    public bool Mappable => (Flags & Vfio.VFIO_REGION_INFO_FLAG_MMAP) != 0 && MapFd is not null;
}

/// <summary>What VFIO_DEVICE_GET_IRQ_INFO reports for one IRQ index (INTx, MSI, MSI-X).</summary>
public sealed record PassthroughIrqInfo(int Index, uint Flags, int Count);

/// <summary>
/// How a passthrough device reaches the real (or remote) device: the VFIO device model, over kernel VFIO ioctls or a
/// vfio-user socket. Calls come from vCPU threads (config and BAR accesses) and set-up; an implementation serializes
/// them itself. Every failure is a <see cref="PassthroughException"/> naming the device; after the connection is lost
/// every call fails at once (<see cref="Failed"/>).
/// </summary>
public interface IPassthroughTransport : IDisposable
{
    /// <summary>"vfio-user socket /run/dev.sock" or "vfio 0000:03:00.0": what error messages name.</summary>
    string Name { get; }
    /// <summary>Why the transport stopped working (the connection closed, a malformed reply), or null.</summary>
    string? Failed { get; }
    PassthroughDeviceInfo GetDeviceInfo();
    PassthroughRegion GetRegionInfo(int index);
    PassthroughIrqInfo GetIrqInfo(int index);
    void RegionRead(int region, ulong offset, Span<byte> data);
    void RegionWrite(int region, ulong offset, ReadOnlySpan<byte> data);
    /// <summary>Binds eventfds to vectors 0.. of <paramref name="irqIndex"/> (the device signals them); empty: disables the index.</summary>
    void SetIrqEventFds(int irqIndex, IReadOnlyList<EventFdHandle> fds);
    /// <summary>
    /// Hands the device an eventfd that unmasks vector 0 of <paramref name="irqIndex"/> when signalled (ACTION_UNMASK):
    /// for INTx, KVM's resample eventfd, so the guest's EOI re-arms the device's automasked line.
    /// </summary>
    void SetIrqUnmaskEventFd(int irqIndex, EventFdHandle fd);
    void Reset();
    /// <summary>Makes all of guest RAM reachable by the device's DMA, at guest-physical addresses.</summary>
    void MapGuestMemory(GuestMemory memory);
}
