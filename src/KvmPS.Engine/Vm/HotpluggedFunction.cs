using KvmPS.Devices.Passthrough;
using KvmPS.Devices.Pci;
using KvmPS.Devices.Virtio;

namespace KvmPS.Vm;

/// <summary>
/// What the machine needs of a hot-plugged PCI function, whatever its kind (virtio behind its transport, a passthrough
/// function): the function on the bus, a name for messages, and whether the guest's driver has taken it.
/// </summary>
public interface IHotplugFunction
{
    /// <summary>The function plugged into the slot (its BARs, interrupts and teardown are the bus's business).</summary>
    PciDevice Function { get; }
    string Name { get; }
    /// <summary>
    /// The guest's driver took the device: DRIVER_OK for virtio; for a passthrough function, memory decoding and bus
    /// mastering on (what a driver enables before it uses BARs and DMA) while the device still answers.
    /// </summary>
    bool DriverReady { get; }
}

/// <summary>A virtio device behind its PCI transport.</summary>
public sealed record VirtioHotplugFunction(IVirtioDevice Device, VirtioPciTransport Transport) : IHotplugFunction
{
    public PciDevice Function => Transport;
    public string Name => Device.Name;
    public bool DriverReady => (Transport.Status & VirtioStatus.DriverOk) != 0;
}

/// <summary>A passthrough function (vfio-user or kernel VFIO).</summary>
public sealed record PassthroughHotplugFunction(PassthroughDevice Device) : IHotplugFunction
{
    private const ushort Enabled = PciDevice.CommandMemory | PciDevice.CommandBusMaster;
    public PciDevice Function => Device;
    public string Name => Device.Name;
    public bool DriverReady => Device.Transport.Failed is null && (Device.Command & Enabled) == Enabled;
}
