using KvmPS.Devices.Pci;
using KvmPS.Interop;
using static KvmPS.Interop.Vfio;

namespace KvmPS.Devices.Passthrough;

/// <summary>
/// INTx of a passthrough function, the way VFIO drives it: the device gets a trigger eventfd and an unmask eventfd
/// for IRQ index 0; KVM gets the trigger as a level irqfd on the pin's GSI with the unmask eventfd as its resample
/// eventfd (<see cref="KvmIntxIrqfd"/>). INTx is on while MSI and MSI-X are off: enabling either disables INTx at the
/// device first (VFIO allows one IRQ type at a time), disabling it enables INTx again (PassthroughDevice.Msi.cs).
/// </summary>
public sealed partial class PassthroughDevice
{
    private EventFdHandle? _intxTrigger, _intxUnmask;
    private IDisposable? _intxBinding;

    /// <summary>The GSI the function's INTx is bound to in KVM, or null (no pin, or binding failed).</summary>
    public uint? IntxGsi { get; private set; }

    /// <summary>
    /// The pin the guest is told about: the device's own, when it has an INTx that signals an eventfd and the machine
    /// can bind one; else 0 (no pin, the guest uses MSI-X).
    /// </summary>
    private static byte IntxPinOf(IPassthroughTransport transport, PassthroughDeviceInfo info, byte[] config, PassthroughHost host)
    {
        byte pin = config[0x3D];
        if (pin is < 1 or > 4 || host.BindIntx is null || info.IrqCount <= VFIO_PCI_INTX_IRQ_INDEX) return 0;
        try
        {
            var irq = transport.GetIrqInfo(VFIO_PCI_INTX_IRQ_INDEX);
            return (irq.Flags & VFIO_IRQ_INFO_EVENTFD) != 0 && irq.Count >= 1 ? pin : (byte)0;
        }
        catch (PassthroughException) when (transport.Failed is null) { return 0; } // the device refused the query: no INTx
    }

    /// <summary>Plugged: binds INTx at the pin's GSI (the bus's swizzle, as the DSDT's _PRT says) and enables it at the device.</summary>
    protected override void OnAttached()
    {
        lock (SyncRoot)
        {
            if (InterruptPin == 0 || _host.BindIntx is not { } bind || Slot < 0 || _intxBinding is not null) return;
            uint gsi = PciBus.IntxGsi(Slot, InterruptPin);
            _intxTrigger = EventFdHandle.Create();
            _intxUnmask = EventFdHandle.Create();
            try { _intxBinding = bind(gsi, _intxTrigger, _intxUnmask); }
            catch (Exception e)
            {
                Log($"{Name}: INTx not connected: binding GSI {gsi} failed: {e.Message}");
                DisposeIntx();
                return;
            }
            IntxGsi = gsi;
            EnableIntx();
            Log($"{Name}: INTx pin {(char)('A' + InterruptPin - 1)} on GSI {gsi} (KVM irqfd with resample)");
        }
    }

    private void EnableIntx()
    {
        if (_intxBinding is null) return;
        try
        {
            _transport.SetIrqEventFds(VFIO_PCI_INTX_IRQ_INDEX, [_intxTrigger!]);
            _transport.SetIrqUnmaskEventFd(VFIO_PCI_INTX_IRQ_INDEX, _intxUnmask!);
        }
        catch (PassthroughException e) { Log($"{Name}: INTx enable: {e.Message}"); }
    }

    private void DisableIntx()
    {
        if (_intxBinding is null) return;
        try { _transport.SetIrqEventFds(VFIO_PCI_INTX_IRQ_INDEX, []); }
        catch (PassthroughException e) { Log($"{Name}: INTx disable: {e.Message}"); }
    }

    private void DisposeIntx()
    {
        _intxBinding?.Dispose();
        _intxBinding = null;
        _intxTrigger?.Dispose();
        _intxUnmask?.Dispose();
        _intxTrigger = _intxUnmask = null;
        IntxGsi = null;
    }
}
