using KvmPS.Devices;
using KvmPS.Devices.Config;
using KvmPS.Devices.Display;
using KvmPS.Devices.Passthrough;
using KvmPS.Devices.Pci;

namespace KvmPS.Vm;

/// <summary>What the machine gives passthrough functions (Devices/Passthrough), and what it refuses while one is attached.</summary>
public sealed partial class VirtualMachine
{
    /// <summary>The next KVM memory slot number a passthrough BAR area gets (RAM low, firmware 16, framebuffer 20, warm-up 31).</summary>
    private uint _nextPassthroughSlot = 32;

    /// <summary>MSI routes, the I/O thread that relays the device's masked MSI-X vectors, memory slots for mmap-able BAR areas, INTx irqfds.</summary>
    private PassthroughHost PassthroughHost() => new(_msiRouter, (fd, callback) => _ioLoop!.Register(fd, callback),
        (host, size) => new KvmGuestMemorySlot(_vm!, _nextPassthroughSlot++, host, size),
        (gsi, trigger, resample) => new KvmIntxIrqfd(_vm!, gsi, trigger, resample));

    /// <summary>Creates a PCI function of its own (the display, a passthrough function) with what it needs of the machine.</summary>
    private PciDevice CreateFunction(PciFunctionConfig config, DeviceContext context) =>
        config.CreateFunction(new PciFunctionContext(context, _firmware is not null,
            vram => new KvmVramSlot(_vm!, DirtyLog, DisplayDeviceConfig.VramSlotNumber, vram))
        {
            Passthrough = PassthroughHost(),
        });

    /// <summary>
    /// Refuses a snapshot or migration up front while a passthrough device is attached: like real VFIO devices without
    /// migration support, its state lives in the device (docs/devices.md, "Passthrough").
    /// </summary>
    public void ThrowIfNotMigratable()
    {
        // A hot-plugged one counts as much as a configured one.
        if (Config.Devices.Concat(HotpluggedDevices.Select(d => d.Config)).FirstOrDefault(d => d is VfioUserDeviceConfig or VfioDeviceConfig) is { } device)
            throw new PassthroughNotMigratableException(device switch
            {
                VfioUserDeviceConfig u => $"vfio-user socket {u.SocketPath}",
                VfioDeviceConfig v => $"vfio {v.HostAddress}",
                _ => device.Type,
            });
    }

}
