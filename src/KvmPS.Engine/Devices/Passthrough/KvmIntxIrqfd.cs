using KvmPS.Interop;

namespace KvmPS.Devices.Passthrough;

/// <summary>
/// A passthrough function's INTx as KVM sees it: the device's trigger eventfd bound to the pin's GSI as a
/// level-triggered irqfd with a resample eventfd (KVM_IRQFD_FLAG_RESAMPLE). The device's signal asserts the IOAPIC
/// pin; the guest's EOI lowers it and signals the resample eventfd, which the device takes as "unmask INTx", so a
/// line still asserted fires again. No VMM thread is on the path. Disposing unbinds it.
/// </summary>
public sealed class KvmIntxIrqfd : IDisposable
{
    private readonly KvmVmHandle _vm;
    private readonly EventFdHandle _trigger;
    private readonly uint _gsi;
    private bool _disposed;

    public KvmIntxIrqfd(KvmVmHandle vm, uint gsi, EventFdHandle trigger, EventFdHandle resample)
    {
        Kvm.IrqfdResample(vm, trigger, resample, gsi);
        (_vm, _gsi, _trigger) = (vm, gsi, trigger);
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (_vm.IsClosed || _trigger.IsClosed) return; // closing the VM fd drops its irqfds
        try { Kvm.Irqfd(_vm, _trigger, _gsi, deassign: true); } catch (IOException) { }
    }
}
