using KvmPS.Interop;
using static KvmPS.Interop.KvmConstants;

namespace KvmPS.Devices.Pci;

/// <summary>
/// The VM's GSI routing table: the legacy irqchip routes, and MSI delivery through KVM, where each route is a GSI
/// (24 and up) with an MSI routing entry and an eventfd bound to the GSI with KVM_IRQFD, so a device thread raises
/// the interrupt with one write(2) and no vCPU exit.
/// KVM_SET_GSI_ROUTING replaces the whole table, so every commit carries the irqchip routes too
/// (<see cref="IrqchipRoutes"/>). They are the PC's wiring, as the MADT and MP table describe it: ISA IRQ0 (the
/// in-kernel PIT raises GSI 0) is on IOAPIC pin 2, matching the MADT's interrupt source override IRQ0 → GSI 2;
/// KVM's own default table is an identity map, which leaves an OS that honours the override without a timer.
/// </summary>
public sealed class KvmMsiRouter : IMsiController, IDisposable
{
    public const uint FirstMsiGsi = 24;
    public const uint IrqchipPicMaster = 0, IrqchipPicSlave = 1, IrqchipIoapic = 2;

    private readonly KvmVmHandle? _vm;
    private readonly Action<kvm_irq_routing_entry[]> _commit;
    private readonly Action<EventFdHandle, uint, bool> _irqfd;
    private readonly object _lock = new();
    private readonly SortedDictionary<uint, (ulong Address, uint Data)> _msiRoutes = new();
    private readonly SortedSet<uint> _freeGsis = new();
    private readonly Action<string> _log;
    private readonly uint _maxGsi;
    private uint _nextGsi = FirstMsiGsi;
    private bool _disposed;

    public KvmMsiRouter(KvmVmHandle vm, Action<string> log)
    {
        _vm = vm;
        _log = log;
        _commit = table => Kvm.SetGsiRouting(vm, table);
        _irqfd = (fd, gsi, deassign) => Kvm.Irqfd(vm, fd, gsi, deassign);
        int max = Kvm.CheckExtension(vm, KVM_CAP_IRQ_ROUTING);
        _maxGsi = max > 0 ? (uint)max : 1024;
    }

    /// <summary>Without KVM (tests): <paramref name="commit"/> stands in for KVM_SET_GSI_ROUTING, <paramref name="irqfd"/> for KVM_IRQFD.</summary>
    internal KvmMsiRouter(Action<kvm_irq_routing_entry[]> commit, Action<EventFdHandle, uint, bool> irqfd, Action<string> log, uint maxGsi = 1024)
    {
        _commit = commit;
        _irqfd = irqfd;
        _log = log;
        _maxGsi = maxGsi;
    }

    private bool VmClosed => _vm is { IsClosed: true };

    /// <summary>
    /// The legacy irqchip routes: GSIs 0–15 on the master (0–7) or slave (8–15) PIC pin gsi % 8, except GSI 2 (the
    /// cascade); GSI 0 on IOAPIC pin 2 (the MADT override and the MP table say so), GSIs 1 and 3–23 on the IOAPIC
    /// pin of the same number. QEMU wires a PC the same way.
    /// </summary>
    public static List<kvm_irq_routing_entry> IrqchipRoutes()
    {
        var list = new List<kvm_irq_routing_entry>();
        for (uint gsi = 0; gsi < 24; gsi++)
        {
            if (gsi == 2)
                continue;
            list.Add(new kvm_irq_routing_entry { gsi = gsi, type = KVM_IRQ_ROUTING_IRQCHIP, irqchip_irqchip = IrqchipIoapic, irqchip_pin = gsi == 0 ? 2 : gsi });
            if (gsi < 16)
                list.Add(new kvm_irq_routing_entry { gsi = gsi, type = KVM_IRQ_ROUTING_IRQCHIP, irqchip_irqchip = gsi < 8 ? IrqchipPicMaster : IrqchipPicSlave, irqchip_pin = gsi % 8 });
        }
        return list;
    }

    /// <summary>Hands KVM the table without MSI routes: done once when the VM is built, before any vCPU runs.</summary>
    public void CommitIrqchipRoutes()
    {
        lock (_lock)
            _commit(BuildTable());
    }

    /// <summary>The full table to hand to KVM: defaults plus one MSI entry per configured route.</summary>
    public kvm_irq_routing_entry[] BuildTable()
    {
        lock (_lock)
        {
            var table = IrqchipRoutes();
            foreach (var (gsi, msg) in _msiRoutes)
                table.Add(new kvm_irq_routing_entry
                {
                    gsi = gsi, type = KVM_IRQ_ROUTING_MSI,
                    msi_address_lo = (uint)msg.Address, msi_address_hi = (uint)(msg.Address >> 32), msi_data = msg.Data,
                });
            return table.ToArray();
        }
    }

    /// <summary>
    /// Applies one change to the MSI routes and hands the resulting table to KVM, all under one lock: two threads
    /// changing routes at once commit in the order they changed them, so the table KVM ends with has both.
    /// If KVM refuses the table, the change is undone (the entry removed), so later commits do not carry it.
    /// </summary>
    private bool UpdateAndCommit(uint gsi, (ulong Address, uint Data)? message)
    {
        lock (_lock)
        {
            if (message is { } m) _msiRoutes[gsi] = m;
            else if (!_msiRoutes.Remove(gsi) || VmClosed) return true; // nothing to tell KVM
            try
            {
                _commit(BuildTable());
                return true;
            }
            catch (Exception e)
            {
                if (message is not null) _msiRoutes.Remove(gsi);
                _log($"MSI route for GSI {gsi}: KVM_SET_GSI_ROUTING failed: {e.Message}");
                return false;
            }
        }
    }

    public IMsiRoute CreateRoute()
    {
        uint gsi;
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_freeGsis.Count > 0) { gsi = _freeGsis.Min; _freeGsis.Remove(gsi); }
            else if (_nextGsi < _maxGsi) gsi = _nextGsi++;
            else throw new InvalidOperationException($"no free GSI for an MSI route (KVM allows {_maxGsi}).");
        }
        var fd = EventFdHandle.Create();
        try { _irqfd(fd, gsi, false); }
        catch
        {
            fd.Dispose();
            lock (_lock) _freeGsis.Add(gsi);
            throw;
        }
        return new Route(this, gsi, fd);
    }

    private sealed class Route(KvmMsiRouter router, uint gsi, EventFdHandle fd) : IIrqfdRoute
    {
        private (ulong, uint)? _message;
        private readonly List<EventFdHandle> _bound = [];
        private bool _disposed;

        public bool Ready => !_disposed && _message is not null;

        public void Configure(ulong address, uint data)
        {
            if (_disposed || _message == (address, data)) return;
            _message = router.UpdateAndCommit(gsi, (address, data)) ? (address, data) : null;
        }

        public void Fire()
        {
            if (!_disposed && _message is not null) fd.Signal();
        }

        public void Bind(EventFdHandle eventFd)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            lock (_bound)
            {
                if (_bound.Contains(eventFd)) return;
                router._irqfd(eventFd, gsi, false);
                _bound.Add(eventFd);
            }
        }

        public void Unbind(EventFdHandle eventFd)
        {
            lock (_bound)
            {
                if (!_bound.Remove(eventFd)) return;
                if (!eventFd.IsClosed && !router.VmClosed) router._irqfd(eventFd, gsi, true);
            }
        }

        public void Dispose()
        {
            if (_disposed) return;
            _disposed = true;
            // Eventfds still bound (a device that did not unbind) go first: the GSI is handed out again below.
            lock (_bound)
            {
                foreach (var bound in _bound)
                    try { if (!bound.IsClosed && !router.VmClosed) router._irqfd(bound, gsi, true); } catch (Exception e) { router._log($"irqfd deassign GSI {gsi}: {e.Message}"); }
                _bound.Clear();
            }
            try { router._irqfd(fd, gsi, true); } catch (Exception e) { router._log($"irqfd deassign GSI {gsi}: {e.Message}"); }
            router.UpdateAndCommit(gsi, null);
            lock (router._lock) router._freeGsis.Add(gsi);
            fd.Dispose();
        }
    }

    public void Dispose()
    {
        lock (_lock) _disposed = true;
    }
}
