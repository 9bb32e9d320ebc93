using KvmPS.Interop;
using KvmPS.Threading;

namespace KvmPS.Vm;

/// <summary>
/// A KVM VM created on a thread of its own while kvmps-vmm parses its arguments and reads a snapshot, so that restore
/// and boot do not wait for it. KVM charges the first memory-slot change after <c>KVM_CREATE_IRQCHIP</c> or
/// <c>KVM_CREATE_PIT2</c> a fixed cost whatever the slot's size (about 7 ms on the nested test host, against 0.1-0.2 ms
/// for every other change, measured with 4 KiB to 2 GiB slots; creating either device again re-arms it): so the
/// early VM gets its in-kernel irqchip and PIT here, and a one-page slot added and deleted pays that cost off the
/// critical path.
/// Nothing here is required: when the early VM failed or was made for another device path, the machine creates its
/// VM itself and reports errors as usual.
/// </summary>
public static class EarlyKvmVm
{
    private static readonly object Gate = new();
    private static Thread? _thread;
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
            _thread = EngineThreads.Start(ThreadRole.Setup, "kvm-early-vm", () => Create(devicePath));
        }
    }

    /// <summary>
    /// The early VM, with its in-kernel irqchip and PIT already created, if one was started for <paramref name="devicePath"/>
    /// and succeeded (waiting for it if needed); it is handed out once. Otherwise false, and the caller creates its own.
    /// </summary>
    public static bool TryTake(string devicePath, out KvmSystemHandle system, out KvmVmHandle vm)
    {
        system = null!;
        vm = null!;
        Thread? thread;
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
            Kvm.CreateIrqchip(vm);
            Kvm.CreatePit2(vm, KvmConstants.KVM_PIT_SPEAKER_DUMMY);
            PayFirstSlotCost(vm);
            lock (Gate) (_system, _vm) = (system, vm);
        }
        catch (Exception e) when (e is KvmUnavailableException or NativeCallException or IOException)
        {
            vm?.Dispose();
            system?.Dispose();
        }
    }

    private static void PayFirstSlotCost(KvmVmHandle vm)
    {
        const int PageBytes = 4096;
        nint page = Libc.Mmap(0, PageBytes, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_PRIVATE | Libc.MAP_ANONYMOUS, -1, 0);
        if (page == -1) return;
        try
        {
            var slot = new kvm_userspace_memory_region { slot = 0, guest_phys_addr = 0, memory_size = PageBytes, userspace_addr = (ulong)page };
            Kvm.SetUserMemoryRegion(vm, slot);
            slot.memory_size = 0; // size 0 deletes the slot: the machine's memory takes slot 0 as usual
            Kvm.SetUserMemoryRegion(vm, slot);
        }
        finally { Libc.Munmap(page, PageBytes); }
    }
}
