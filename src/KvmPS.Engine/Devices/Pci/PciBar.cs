namespace KvmPS.Devices.Pci;

/// <summary>
/// One memory BAR of a PCI function. The size is a power of two; the guest-programmed address lives in the
/// config space (<see cref="Address"/>), the address the region is registered at on the MMIO bus in <see cref="MappedAt"/>.
/// </summary>
public sealed class PciBar
{
    public int Index { get; }
    public ulong Size { get; }
    public bool Is64Bit { get; }
    public bool Prefetchable { get; }
    /// <summary>What the BAR registers currently hold (without the flag bits).</summary>
    public ulong Address { get; internal set; }
    /// <summary>Where the region is decoded right now, or null (memory decode off, BAR unassigned, or conflicting).</summary>
    public ulong? MappedAt { get; internal set; }
    /// <summary>The bus-side object registered on the MMIO bus; one per BAR so it can be moved alone.</summary>
    internal IBusDevice Region { get; }

    internal PciBar(PciDevice owner, int index, ulong size, bool is64Bit, bool prefetchable)
    {
        Index = index;
        Size = size;
        Is64Bit = is64Bit;
        Prefetchable = prefetchable;
        Region = new BarRegion(owner, this);
    }

    /// <summary>Bits 3:0 of the low BAR dword: memory space, type (00 = 32-bit, 10 = 64-bit), prefetchable.</summary>
    internal uint FlagBits => (Is64Bit ? 0b100u : 0u) | (Prefetchable ? 0b1000u : 0u);

    private sealed class BarRegion(PciDevice owner, PciBar bar) : IBusDevice
    {
        public string Name => $"{owner.Name} BAR{bar.Index}";
        public void Read(ulong offset, Span<byte> data) => owner.DispatchBarRead(bar, offset, data);
        public void Write(ulong offset, ReadOnlySpan<byte> data) => owner.DispatchBarWrite(bar, offset, data);
    }
}
