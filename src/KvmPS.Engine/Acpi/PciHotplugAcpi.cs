using KvmPS.Vm;
using static KvmPS.Acpi.Aml;

namespace KvmPS.Acpi;

/// <summary>
/// The DSDT's ACPI PCI hot-plug description (docs/acpi.md): under <c>\_SB.PCI0</c> the controller's registers
/// (<see cref="PciHotplugController"/>), one slot object <c>Sxx</c> per hot-pluggable slot and per configured slot
/// whose device can be removed live (<see cref="ConfiguredDeviceSlots"/>) (<c>_ADR</c>, <c>_SUN</c>, <c>_EJ0</c>) and the scan method <c>PSCN</c> that <c>\_GPE._E01</c> runs: it takes the pending insert and eject
/// request bitmaps, acknowledges them, and notifies each slot Device Check (1) or Eject Request (3). Straight-line
/// code, no loop; no mutex either, as each bitmap is read and acknowledged whole.
/// </summary>
public static class PciHotplugAcpi
{
    /// <summary>The GPE0 bit the controller raises (the CPU hot-plug controller has GPE 2).</summary>
    public const int Gpe = 1;
    private const int NotifyDeviceCheck = 1, NotifyEjectRequest = 3;

    /// <summary>The slot object's name for <paramref name="slot"/>: S01..S1F.</summary>
    public static string SlotName(int slot) => $"S{slot:X2}";

    /// <summary>The slot object's full path, e.g. \_SB.PCI0.S07.</summary>
    public static string SlotPath(int slot) => $"\\_SB.PCI0.{SlotName(slot)}";

    /// <summary>Bitmap of the hot-pluggable slots when <paramref name="coldPluggedDevices"/> devices take slots 1..N: the rest up to 31.</summary>
    public static uint HotplugSlotsAfter(int coldPluggedDevices)
    {
        uint slots = 0;
        for (int s = coldPluggedDevices + 1; s < 32; s++) slots |= 1u << s;
        return slots;
    }

    /// <summary>The slots with slot objects for a machine with these configured devices: the removable configured ones and the hot-plug ones after them.</summary>
    public static uint SlotObjectsFor(IReadOnlyList<Devices.Config.DeviceConfig> devices) =>
        ConfiguredDeviceSlots.Removable(devices) | HotplugSlotsAfter(devices.Count);

    /// <summary>
    /// <c>Scope(\_SB.PCI0) { region, fields, PSCN, Sxx... }</c>, <c>Scope(\_SB) { Device(PHPR) }</c> reserving the
    /// ports, and <c>Scope(\_GPE) { Method(_E01) { \_SB.PCI0.PSCN() } }</c>; empty when no slot is hot-pluggable.
    /// Must follow the DSDT's <c>Device(PCI0)</c>.
    /// </summary>
    public static byte[] BuildDsdtAml(uint slotObjects)
    {
        if ((slotObjects & 1) != 0) throw new ArgumentOutOfRangeException(nameof(slotObjects), "slot 0 is the host bridge.");
        if (slotObjects == 0) return [];
        var slots = Enumerable.Range(1, 31).Where(s => (slotObjects & (1u << s)) != 0).ToArray();
        var pci0 = new List<byte[]>
        {
            OperationRegion("PCHR", RegionSpace.SystemIO, MemoryLayout.PciHotplugPort, PciHotplugController.Length),
            Field("PCHR", FieldAccess.DWord, FieldUpdate.WriteAsZeros,
                new FieldUnit("PCIU", 32), new FieldUnit("PCID", 32), new FieldUnit("PCEJ", 32), new FieldUnit("PCRM", 32)),
            BuildScan(slots),
        };
        foreach (int slot in slots)
            pci0.Add(Device(SlotName(slot),
                Name("_ADR", Integer((ulong)slot << 16)),
                Name("_SUN", Integer((ulong)slot)),
                // _EJ0: the OS has released the device; the VMM tears it down.
                Method("_EJ0", 1, serialized: false, Store(Integer(1UL << slot), Ref("PCEJ")))));
        var reservation = Device("PHPR",
            Name("_HID", EisaId("PNP0C02")),
            Name("_UID", Integer(3)),
            Name("_CRS", ResourceTemplate(IoPort(MemoryLayout.PciHotplugPort, PciHotplugController.Length))));
        return
        [
            .. Scope("\\_SB.PCI0", pci0.ToArray()),
            .. Scope("\\_SB", reservation),
            .. Scope("\\_GPE", Method($"_E{Gpe:X2}", 0, serialized: false, Call("\\_SB.PCI0.PSCN"))),
        ];
    }

    /// <summary>PSCN: Local0 = PCIU, Local1 = PCID, acknowledge both (write one to clear), then notify each slot.</summary>
    private static byte[] BuildScan(int[] slots)
    {
        var body = new List<byte[]>
        {
            Store(Ref("PCIU"), Local(0)),
            Store(Ref("PCID"), Local(1)),
            Store(Local(0), Ref("PCIU")),
            Store(Local(1), Ref("PCID")),
        };
        foreach (int slot in slots)
        {
            body.Add(If(And(Local(0), Integer(1UL << slot)), Notify(SlotName(slot), Integer(NotifyDeviceCheck))));
            body.Add(If(And(Local(1), Integer(1UL << slot)), Notify(SlotName(slot), Integer(NotifyEjectRequest))));
        }
        return Method("PSCN", 0, serialized: false, body.ToArray());
    }
}
