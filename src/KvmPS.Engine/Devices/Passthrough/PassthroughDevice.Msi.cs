using KvmPS.Devices.Pci;
using static KvmPS.Interop.Vfio;

namespace KvmPS.Devices.Passthrough;

/// <summary>
/// Which IRQ index the device signals: INTx, MSI or MSI-X, one at a time as VFIO wants, following the guest's
/// enable bits (MSI-X over MSI over INTx). MSI and MSI-X share the device's vector eventfds, their KVM delivery
/// (irqfd while deliverable) and the relay while masked (<see cref="PassthroughDevice.UpdateDirectDelivery"/>).
/// </summary>
public sealed partial class PassthroughDevice
{
    /// <summary>The index set at the device now (INTx until the guest enables MSI or MSI-X) and how many vectors it has.</summary>
    private int _irqIndex = VFIO_PCI_INTX_IRQ_INDEX, _irqVectors;

    /// <summary>The IRQ index the device signals now (VFIO_PCI_INTX/MSI/MSIX_IRQ_INDEX), for tests and diagnostics.</summary>
    public int IrqIndex { get { lock (SyncRoot) return _irqIndex; } }

    /// <summary>
    /// How many MSI vectors the device can signal through eventfds (VFIO_DEVICE_GET_IRQ_INFO, index 1): 0 hides its MSI
    /// capability, since a guest that enabled it would get no interrupts; fewer than the capability claims caps it.
    /// </summary>
    private static int MsiVectorsOf(IPassthroughTransport transport, PassthroughDeviceInfo info)
    {
        if (info.IrqCount <= VFIO_PCI_MSI_IRQ_INDEX) return 0;
        try
        {
            var irq = transport.GetIrqInfo(VFIO_PCI_MSI_IRQ_INDEX);
            return (irq.Flags & VFIO_IRQ_INFO_EVENTFD) != 0 ? Math.Max(irq.Count, 0) : 0;
        }
        catch (PassthroughException) when (transport.Failed is null) { return 0; } // the device refused the query: no MSI
    }

    /// <summary>Applies the guest's MSI-X enable and function-mask bits (the high byte of message control).</summary>
    private void SetMsiXControl(byte high)
    {
        if (_msix is null) return;
        _msix.SetControl(enabled: (high & 0x80) != 0, functionMasked: (high & 0x40) != 0);
        ApplyIrqMode();
    }

    /// <summary>A guest write into the MSI capability at <paramref name="offset"/> from its start.</summary>
    private void SetMsi(int offset, ReadOnlySpan<byte> data)
    {
        if (_msi is null) return;
        _msi.Write(offset, data);
        ApplyIrqMode();
    }

    /// <summary>
    /// Puts the vectors on their delivery paths, then moves the device to the IRQ index the guest's enable bits call
    /// for when that changed (or MSI's vector count did): the old index off first (VFIO_DEVICE_SET_IRQS with no
    /// eventfds, or INTx disabled), then the new one on (one eventfd per vector, or INTx again).
    /// </summary>
    private void ApplyIrqMode()
    {
        UpdateDirectDelivery();
        var (index, vectors) = _msix is { Enabled: true } ? (VFIO_PCI_MSIX_IRQ_INDEX, _msix.VectorCount)
            : _msi is { Enabled: true } ? (VFIO_PCI_MSI_IRQ_INDEX, _msi.VectorCount)
            : (VFIO_PCI_INTX_IRQ_INDEX, 0);
        if (index == _irqIndex && vectors == _irqVectors) return;
        LeaveIrqMode();
        (_irqIndex, _irqVectors) = (index, vectors);
        if (index == VFIO_PCI_INTX_IRQ_INDEX)
        {
            EnableIntx();
            return;
        }
        string kind = index == VFIO_PCI_MSIX_IRQ_INDEX ? "MSI-X" : "MSI";
        try { _transport.SetIrqEventFds(index, _vectorEvents[..vectors]); }
        catch (PassthroughException e) { Log($"{Name}: {kind} enable: {e.Message}"); }
        // Which path the vectors take (what KVM accepted), once per enable: the guest programs the messages first.
        Log($"{Name}: {kind} enabled: {_direct.Take(vectors).Count(r => r is not null)} of {vectors} vectors delivered by KVM (irqfd), the rest relayed");
    }

    /// <summary>Turns the device's current IRQ index off (INTx: disabled; MSI/MSI-X: no eventfds).</summary>
    private void LeaveIrqMode()
    {
        if (_irqIndex == VFIO_PCI_INTX_IRQ_INDEX)
        {
            DisableIntx();
            return;
        }
        try { _transport.SetIrqEventFds(_irqIndex, []); }
        catch (PassthroughException e) { Log($"{Name}: {(_irqIndex == VFIO_PCI_MSIX_IRQ_INDEX ? "MSI-X" : "MSI")} disable: {e.Message}"); }
    }
}
