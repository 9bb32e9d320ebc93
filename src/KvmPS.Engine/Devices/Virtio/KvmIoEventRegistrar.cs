using KvmPS.Interop;

namespace KvmPS.Devices.Virtio;

/// <summary>
/// KVM_IOEVENTFD-backed notification addresses: a guest write of the given length to the address signals an eventfd
/// inside KVM (no exit to the VMM), and the <see cref="IoEventLoop"/> runs the handler on its thread. If KVM refuses
/// (no ioeventfd support, e.g. some nested setups), it says so once and returns null: the caller keeps handling the
/// MMIO write synchronously.
/// </summary>
public sealed class KvmIoEventRegistrar(KvmVmHandle vm, IoEventLoop loop, Action<string> log) : IIoEventRegistrar
{
    private volatile bool _unavailable;

    public IDisposable? TryRegisterMmioWrite(ulong address, uint length, Action onWrite)
    {
        if (_unavailable || vm.IsClosed) return null;
        var fd = EventFdHandle.Create();
        try
        {
            Kvm.Ioeventfd(vm, fd, address, length, pio: false);
        }
        catch (NativeCallException e)
        {
            fd.Dispose();
            _unavailable = true;
            log($"ioeventfd unavailable ({e.Message}); virtio notifications fall back to MMIO exits");
            return null;
        }
        IDisposable registration;
        try { registration = loop.Register(fd, onWrite); }
        catch
        {
            try { Kvm.Ioeventfd(vm, fd, address, length, pio: false, deassign: true); } catch (NativeCallException) { }
            fd.Dispose();
            throw;
        }
        return new Handle(vm, fd, address, length, registration);
    }

    private sealed class Handle(KvmVmHandle vm, EventFdHandle fd, ulong address, uint length, IDisposable registration) : IDisposable
    {
        private int _disposed;
        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
            registration.Dispose();
            if (!vm.IsClosed)
            {
                try { Kvm.Ioeventfd(vm, fd, address, length, pio: false, deassign: true); } catch (NativeCallException) { }
            }
            fd.Dispose();
        }
    }
}
