using KvmPS.Vm;

namespace KvmPS.Devices.Virtio;

/// <summary>
/// A virtio device type (rng, blk, net, …) behind a transport. The transport owns feature negotiation, the status
/// state machine, queue setup and interrupts; the device describes itself and processes its queues. All calls
/// come under the transport's lock, from a vCPU thread or the I/O thread, so a device needs no locking of its own
/// for state the transport calls touch.
/// </summary>
public interface IVirtioDevice : IDisposable
{
    string Name { get; }
    /// <summary>Virtio device ID (1 = net, 2 = block, 4 = entropy, 5 = balloon, 19 = vsock, …); PCI device ID is 0x1040 + this.</summary>
    ushort DeviceType { get; }
    /// <summary>24-bit PCI class code (base, subclass, programming interface).</summary>
    uint PciClassCode { get; }
    int QueueCount { get; }
    ushort MaxQueueSize(int queue);
    /// <summary>Device-type feature bits the device offers; the transport adds VERSION_1, EVENT_IDX and INDIRECT_DESC.</summary>
    ulong DeviceFeatures { get; }
    /// <summary>Bytes of device-specific configuration (0: no device-config capability).</summary>
    int ConfigSize { get; }
    void ReadConfig(int offset, Span<byte> data);
    void WriteConfig(int offset, ReadOnlySpan<byte> data);
    /// <summary>The driver set DRIVER_OK; <paramref name="context"/> stays valid until <see cref="Reset"/>.</summary>
    void Activate(IVirtioContext context);
    /// <summary>The driver wrote 0 to the status (or the transport is resetting): forget all queue state.</summary>
    void Reset();
    /// <summary>The driver notified queue <paramref name="queue"/> (which is enabled and not broken).</summary>
    void ProcessQueue(IVirtioContext context, int queue);
}

/// <summary>What the transport offers a device while it is active.</summary>
public interface IVirtioContext
{
    GuestMemory Memory { get; }
    ulong NegotiatedFeatures { get; }
    /// <summary>The queue if the driver enabled it, else null.</summary>
    VirtQueue? Queue(int index);
    /// <summary>Interrupts the driver for used buffers on <paramref name="queue"/> if it wants one (EVENT_IDX / NO_INTERRUPT).</summary>
    void NotifyUsed(int queue);
    /// <summary>Device configuration changed: bumps config_generation and sends the configuration interrupt.</summary>
    void ConfigChanged();
    /// <summary>Marks the device broken (DEVICE_NEEDS_RESET), logs <paramref name="reason"/> and tells the driver.</summary>
    void Fail(string reason);
    void Log(string message);
}

/// <summary>Feature bits from the virtio 1.x specification (section 6, reserved feature bits).</summary>
public static class VirtioFeatures
{
    public const ulong RingIndirectDesc = 1UL << 28;
    public const ulong RingEventIdx = 1UL << 29;
    public const ulong Version1 = 1UL << 32;
    public const ulong AccessPlatform = 1UL << 33;
}

/// <summary>Device status bits (virtio 1.x, 2.1).</summary>
public static class VirtioStatus
{
    public const byte Acknowledge = 1, Driver = 2, DriverOk = 4, FeaturesOk = 8, NeedsReset = 0x40, Failed = 0x80;
}
