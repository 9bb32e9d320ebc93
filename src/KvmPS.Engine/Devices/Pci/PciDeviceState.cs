using KvmPS.State;

namespace KvmPS.Devices.Pci;

/// <summary>One BAR as the device defines it and where the guest put it.</summary>
public readonly record struct PciBarState(byte Index, ulong Size, bool Is64Bit, ulong Address);

/// <summary>
/// A PCI function's configuration space (all 256 bytes: command register, BAR registers, capabilities), its BARs
/// with their sizes (checked on restore: a device built differently is refused), the INTx pin level, and the
/// function-specific part (MSI-X for virtio) as an opaque blob its owner reads. Since version 2 the expansion ROM
/// BAR's size (0: no ROM; checked on restore like the BARs; the ROM BAR register itself is in the config bytes); a
/// version-1 record, from before ROM BARs, reads as having none.
/// </summary>
public sealed record PciDeviceState(byte[] Config, PciBarState[] Bars, bool IntxAsserted, byte[] Function, uint RomBarSize = 0)
{
    public const ushort Version = 2;
    private const int MaxFunctionBytes = 1 << 20;

    public void Write(StateWriter w)
    {
        w.WriteFixed(Config);
        w.WriteByte((byte)Bars.Length);
        foreach (var b in Bars)
        {
            w.WriteByte(b.Index);
            w.WriteUInt64(b.Size);
            w.WriteBool(b.Is64Bit);
            w.WriteUInt64(b.Address);
        }
        w.WriteBool(IntxAsserted);
        w.WriteBytes(Function);
        w.WriteUInt32(RomBarSize);
    }

    public static PciDeviceState Read(StateReader r, ushort version)
    {
        DeviceState.EnsureVersion(r, version, Version);
        var config = new byte[PciDevice.ConfigSize];
        r.ReadFixed(config);
        int count = r.ReadByte();
        if (count > 6) throw r.Fail($"{count} BARs (a function has at most 6)");
        var bars = new PciBarState[count];
        for (int i = 0; i < count; i++) bars[i] = new PciBarState(r.ReadByte(), r.ReadUInt64(), r.ReadBool(), r.ReadUInt64());
        bool intx = r.ReadBool();
        var function = r.ReadBytes(MaxFunctionBytes);
        uint romBarSize = version >= 2 ? r.ReadUInt32() : 0;
        if (romBarSize != 0 && (romBarSize < PciExpansionRom.MinBarSize || (romBarSize & (romBarSize - 1)) != 0 || romBarSize > PciExpansionRom.MaxBytes))
            throw r.Fail($"expansion ROM BAR size 0x{romBarSize:x} is not a power of two from 2 KiB to 1 MiB");
        r.EnsureEnd();
        return new PciDeviceState(config, bars, intx, function, romBarSize);
    }
}
