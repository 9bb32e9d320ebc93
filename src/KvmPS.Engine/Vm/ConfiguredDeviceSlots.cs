using KvmPS.Devices.Config;
using KvmPS.Devices.Virtio.Block;
using KvmPS.Devices.Virtio.Net;

namespace KvmPS.Vm;

/// <summary>
/// Which configured (cold-plugged) PCI devices can leave a running machine (docs/acpi.md, "Removing configured
/// devices"). The configured devices sit in slots 1..N in configuration order. virtio-net devices and every
/// virtio-blk disk but the first can: each gets an ACPI slot object with <c>_EJ0</c> like a hot-plug slot. The first
/// disk stays, as it is the boot disk (firmware's <c>bootorder</c>, the root disk of a kernel boot), and so do
/// virtio-rng, balloon, vsock and virtio-mem: they are part of the machine (entropy, memory, the host channel), and a
/// guest that lost them would need them back at the next start anyway.
/// </summary>
public static class ConfiguredDeviceSlots
{
    /// <summary>Bitmap (bit n = slot n) of the configured slots whose device can be removed while the VM runs.</summary>
    public static uint Removable(IReadOnlyList<DeviceConfig> devices)
    {
        uint slots = 0;
        for (int i = 0; i < devices.Count && i < 31; i++)
            if (WhyNotRemovable(devices, i + 1) is null) slots |= 1u << (i + 1);
        return slots;
    }

    /// <summary>Null when the configured device in <paramref name="slot"/> can be removed live; otherwise why not, for the error.</summary>
    public static string? WhyNotRemovable(IReadOnlyList<DeviceConfig> devices, int slot)
    {
        if (slot < 1 || slot > devices.Count) return $"PCI slot {PciAddresses.Format(slot)} holds no configured device";
        var device = devices[slot - 1];
        return device switch
        {
            NetDeviceConfig => null,
            BlockDeviceConfig when FirstDiskSlot(devices) == slot => $"it is the VM's first disk (the boot disk), which stays while the VM runs",
            BlockDeviceConfig => null,
            _ => $"a {device.Type} device is part of the machine and stays while the VM runs (only virtio-blk disks other than the first and virtio-net adapters can be removed live)",
        };
    }

    /// <summary>Slot of the first virtio-blk device, or 0.</summary>
    public static int FirstDiskSlot(IReadOnlyList<DeviceConfig> devices)
    {
        for (int i = 0; i < devices.Count; i++) if (devices[i] is BlockDeviceConfig) return i + 1;
        return 0;
    }

    /// <summary>The PCI addresses of the slots in <paramref name="slots"/>, e.g. "00:02.0, 00:04.0".</summary>
    public static string Format(uint slots) => slots == 0 ? "none" :
        string.Join(", ", Enumerable.Range(1, 31).Where(s => (slots & (1u << s)) != 0).Select(PciAddresses.Format));
}
