namespace KvmPS.Devices;

/// <summary>
/// A device on the port-I/O or MMIO bus. Offsets are relative to the base the device was registered at.
/// Called from vCPU threads, possibly several at once: devices serialize their own state.
/// A device must never throw because of what the guest wrote: bad accesses read as all-ones and writes are ignored.
/// </summary>
public interface IBusDevice
{
    string Name { get; }
    void Read(ulong offset, Span<byte> data);
    void Write(ulong offset, ReadOnlySpan<byte> data);
}

/// <summary>Raises a guest interrupt line (an ISA IRQ through the in-kernel PIC/IOAPIC, or an MSI later).</summary>
public interface IInterruptLine
{
    /// <summary>Edge-triggered pulse.</summary>
    void Trigger();
    /// <summary>Level-triggered assert/deassert.</summary>
    void SetLevel(bool asserted);
}

/// <summary>What a device may ask of the machine it is part of.</summary>
public interface IMachineControl
{
    void RequestPowerOff(string reason);
    void RequestReset(string reason);
    void RequestDebugExit(int guestValue);
}

/// <summary>Where a device's output bytes go (console sinks).</summary>
public delegate void ByteSink(ReadOnlySpan<byte> data);
