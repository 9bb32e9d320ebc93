using KvmPS.Interop;
using KvmPS.Threading;

namespace KvmPS.Vm;

/// <summary>
/// A KVM VM created on a thread of its own while kvmps-vmm parses its arguments and reads a snapshot, so that restore
/// and boot do not wait for <c>KVM_CREATE_VM</c>. Its irqchip and PIT come later, after the memory slots
/// (VirtualMachine.BuildHardwareCore says why).
/// Nothing here is required: when the early VM failed or was made for another device path, the machine creates its
/// VM itself and reports errors as usual.
/// </summary>
public static class EarlyKvmVm
{
    private static readonly object Gate = new();
    private static EngineThread? _thread;
    private static string? _devicePath;
    private static KvmSystemHandle? _system;
    private static KvmVmHandle? _vm;

    /// <summary>Starts creating the VM (once per process).</summary>
    public static void Start(string devicePath = Kvm.DefaultDevicePath)
    {
        lock (Gate)
        {
            if (_thread is not null) return;
            _devicePath = devicePath;
            _thread = EngineThreads.Launch(ThreadRole.Setup, "kvm-early-vm", () => Create(devicePath));
        }
    }

    /// <summary>
    /// The early VM, if one was started for <paramref name="devicePath"/>
    /// and succeeded (waiting for it if needed); it is handed out once. Otherwise false, and the caller creates its own.
    /// </summary>
    public static bool TryTake(string devicePath, out KvmSystemHandle system, out KvmVmHandle vm)
    {
        system = null!;
        vm = null!;
        EngineThread? thread;
        lock (Gate) thread = _thread;
        if (thread is null) return false;
        thread.Join();
        lock (Gate)
        {
            if (_system is null || _vm is null || _devicePath != devicePath) return false;
            (system, vm) = (_system, _vm);
            (_system, _vm) = (null, null);
            return true;
        }
    }

    private static unsafe void Create(string devicePath)
    {
        KvmSystemHandle? system = null;
        KvmVmHandle? vm = null;
        try
        {
            system = Kvm.OpenSystem(devicePath);
            vm = Kvm.CreateVm(system);
            lock (Gate) (_system, _vm) = (system, vm);
        }
        catch (Exception e) when (e is KvmUnavailableException or NativeCallException or IOException)
        {
            vm?.Dispose();
            system?.Dispose();
        }
    }

    /// <summary>
    /// KVM makes the first memory-slot change after <c>KVM_CREATE_IRQCHIP</c>/<c>KVM_CREATE_PIT2</c> wait about 7 ms
    /// (a grace period: no CPU is used). A booted VM, whose slots do not log dirty pages, would pay it inside its first
    /// snapshot's or migration's pause when dirty logging turns on; this adds and deletes a one-page slot at
    /// <paramref name="unusedGuestAddress"/> on a setup thread instead, while the guest boots. The page is outside every
    /// region the guest is given; failure is harmless (the cost is then paid where it was).
    /// </summary>
    public static void PayFirstSlotChangeInBackground(KvmVmHandle vm, uint unusedSlot, ulong unusedGuestAddress) =>
        EngineThreads.Launch(ThreadRole.Setup, "kvm-slot-warmup", () => PayFirstSlotChange(vm, unusedSlot, unusedGuestAddress));

    private static void PayFirstSlotChange(KvmVmHandle vm, uint slotNumber, ulong guestAddress)
    {
        const int PageBytes = 4096;
        nint page = Libc.Mmap(0, PageBytes, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_PRIVATE | Libc.MAP_ANONYMOUS, -1, 0);
        if (page == Libc.MAP_FAILED) return;
        try
        {
            var slot = new kvm_userspace_memory_region { slot = slotNumber, guest_phys_addr = guestAddress, memory_size = PageBytes, userspace_addr = (ulong)page };
            Kvm.SetUserMemoryRegion(vm, slot);
            slot.memory_size = 0; // size 0 deletes it
            Kvm.SetUserMemoryRegion(vm, slot);
        }
        catch (Exception e) when (e is NativeCallException or ObjectDisposedException) { } // the VM went away or refused: nothing to pay
        finally { Libc.Munmap(page, PageBytes); }
    }
}
