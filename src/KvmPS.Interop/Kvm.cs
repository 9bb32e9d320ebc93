using System.Runtime.InteropServices;
using static KvmPS.Interop.KvmConstants;

namespace KvmPS.Interop;

/// <summary>/dev/kvm is missing or cannot be opened.</summary>
public sealed class KvmUnavailableException : IOException
{
    public string DevicePath { get; }
    public KvmUnavailableException(string devicePath, string reason) : base($"KVM is not available at {devicePath}: {reason}") => DevicePath = devicePath;
}

/// <summary>Typed wrappers, one per KVM ioctl the engine uses.</summary>
public static unsafe class Kvm
{
    public const string DefaultDevicePath = "/dev/kvm";

    public static KvmSystemHandle OpenSystem(string devicePath = DefaultDevicePath)
    {
        int fd = Libc.Open(devicePath, Libc.O_RDWR | Libc.O_CLOEXEC, 0);
        if (fd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            string reason = errno switch
            {
                Libc.ENOENT => "the device does not exist (is the kvm module loaded, or is this a VM without nested virtualization?)",
                Libc.EACCES or Libc.EPERM => "permission denied (add the user to the 'kvm' group or run as root)",
                _ => Libc.ErrorText(errno),
            };
            throw new KvmUnavailableException(devicePath, reason);
        }
        var system = new KvmSystemHandle(fd);
        int version = Libc.Ioctl(fd, KVM_GET_API_VERSION, 0);
        if (version != KVM_API_VERSION)
        {
            system.Dispose();
            throw new KvmUnavailableException(devicePath, $"unsupported KVM API version {version} (expected {KVM_API_VERSION})");
        }
        return system;
    }

    private static int Check(int result, string call)
    {
        if (result < 0) throw NativeCallException.FromLastError(call);
        return result;
    }

    public static int CheckExtension(FileDescriptorHandle handle, int capability)
        => Math.Max(0, Libc.Ioctl(handle.Fd, KVM_CHECK_EXTENSION, capability));

    public static int GetVcpuMmapSize(KvmSystemHandle system) => Check(Libc.Ioctl(system.Fd, KVM_GET_VCPU_MMAP_SIZE, 0), "KVM_GET_VCPU_MMAP_SIZE");

    public static kvm_cpuid_entry2[] GetSupportedCpuid(KvmSystemHandle system)
    {
        int bytes = sizeof(kvm_cpuid2) + KVM_MAX_CPUID_ENTRIES * sizeof(kvm_cpuid_entry2);
        byte* buffer = stackalloc byte[bytes];
        new Span<byte>(buffer, bytes).Clear();
        var header = (kvm_cpuid2*)buffer;
        header->nent = KVM_MAX_CPUID_ENTRIES;
        Check(Libc.Ioctl(system.Fd, KVM_GET_SUPPORTED_CPUID, buffer), "KVM_GET_SUPPORTED_CPUID");
        return new ReadOnlySpan<kvm_cpuid_entry2>(buffer + sizeof(kvm_cpuid2), (int)header->nent).ToArray();
    }

    public static uint[] GetMsrIndexList(KvmSystemHandle system)
    {
        const int max = 1024;
        uint* buffer = stackalloc uint[max + 1];
        buffer[0] = max;
        Check(Libc.Ioctl(system.Fd, KVM_GET_MSR_INDEX_LIST, buffer), "KVM_GET_MSR_INDEX_LIST");
        return new ReadOnlySpan<uint>(buffer + 1, (int)buffer[0]).ToArray();
    }

    public static KvmVmHandle CreateVm(KvmSystemHandle system)
    {
        int fd = Libc.Ioctl(system.Fd, KVM_CREATE_VM, 0);
        if (fd < 0) throw NativeCallException.FromLastError("KVM_CREATE_VM");
        return new KvmVmHandle(fd);
    }

    public static void SetUserMemoryRegion(KvmVmHandle vm, kvm_userspace_memory_region region)
        => Check(Libc.Ioctl(vm.Fd, KVM_SET_USER_MEMORY_REGION, &region), "KVM_SET_USER_MEMORY_REGION");

    public static void SetTssAddr(KvmVmHandle vm, ulong address) => Check(Libc.Ioctl(vm.Fd, KVM_SET_TSS_ADDR, (nint)address), "KVM_SET_TSS_ADDR");

    public static void SetIdentityMapAddr(KvmVmHandle vm, ulong address)
        => Check(Libc.Ioctl(vm.Fd, KVM_SET_IDENTITY_MAP_ADDR, &address), "KVM_SET_IDENTITY_MAP_ADDR");

    public static void CreateIrqchip(KvmVmHandle vm) => Check(Libc.Ioctl(vm.Fd, KVM_CREATE_IRQCHIP, 0), "KVM_CREATE_IRQCHIP");

    public static void CreatePit2(KvmVmHandle vm, uint flags)
    {
        var config = new kvm_pit_config { flags = flags };
        Check(Libc.Ioctl(vm.Fd, KVM_CREATE_PIT2, &config), "KVM_CREATE_PIT2");
    }

    public static void IrqLine(KvmVmHandle vm, uint irq, bool level)
    {
        var line = new kvm_irq_level { irq = irq, level = level ? 1u : 0u };
        Check(Libc.Ioctl(vm.Fd, KVM_IRQ_LINE, &line), "KVM_IRQ_LINE");
    }

    public static void SetGsiRouting(KvmVmHandle vm, ReadOnlySpan<kvm_irq_routing_entry> entries)
    {
        int bytes = sizeof(kvm_irq_routing) + entries.Length * sizeof(kvm_irq_routing_entry);
        byte[] buffer = new byte[bytes];
        fixed (byte* p = buffer)
        {
            ((kvm_irq_routing*)p)->nr = (uint)entries.Length;
            entries.CopyTo(new Span<kvm_irq_routing_entry>(p + sizeof(kvm_irq_routing), entries.Length));
            Check(Libc.Ioctl(vm.Fd, KVM_SET_GSI_ROUTING, p), "KVM_SET_GSI_ROUTING");
        }
    }

    public static void Irqfd(KvmVmHandle vm, EventFdHandle eventFd, uint gsi, bool deassign = false)
    {
        var request = new kvm_irqfd { fd = (uint)eventFd.Fd, gsi = gsi, flags = deassign ? KVM_IRQFD_FLAG_DEASSIGN : 0 };
        Check(Libc.Ioctl(vm.Fd, KVM_IRQFD, &request), "KVM_IRQFD");
    }

    /// <summary>
    /// A level-triggered irqfd (KVM_IRQFD_FLAG_RESAMPLE): a signal on <paramref name="eventFd"/> asserts
    /// <paramref name="gsi"/> until the guest EOIs it; then KVM lowers the line and signals <paramref name="resampleFd"/>.
    /// </summary>
    public static void IrqfdResample(KvmVmHandle vm, EventFdHandle eventFd, EventFdHandle resampleFd, uint gsi)
    {
        var request = new kvm_irqfd { fd = (uint)eventFd.Fd, gsi = gsi, flags = KVM_IRQFD_FLAG_RESAMPLE, resamplefd = (uint)resampleFd.Fd };
        Check(Libc.Ioctl(vm.Fd, KVM_IRQFD, &request), "KVM_IRQFD (resample)");
    }

    public static void Ioeventfd(KvmVmHandle vm, EventFdHandle eventFd, ulong address, uint length, bool pio, ulong? dataMatch = null, bool deassign = false)
    {
        var request = new kvm_ioeventfd
        {
            addr = address,
            len = length,
            fd = eventFd.Fd,
            datamatch = dataMatch ?? 0,
            flags = (pio ? KVM_IOEVENTFD_FLAG_PIO : 0) | (dataMatch.HasValue ? KVM_IOEVENTFD_FLAG_DATAMATCH : 0) | (deassign ? KVM_IOEVENTFD_FLAG_DEASSIGN : 0),
        };
        Check(Libc.Ioctl(vm.Fd, KVM_IOEVENTFD, &request), "KVM_IOEVENTFD");
    }

    public static KvmVcpuHandle CreateVcpu(KvmVmHandle vm, uint id)
    {
        int fd = Libc.Ioctl(vm.Fd, KVM_CREATE_VCPU, (nint)id);
        if (fd < 0) throw NativeCallException.FromLastError("KVM_CREATE_VCPU", $"vCPU {id}");
        return new KvmVcpuHandle(fd);
    }

    /// <summary>KVM_RUN. Returns 0, or the errno for the interruptions a run loop handles (EINTR, EAGAIN); throws on anything else.</summary>
    public static int Run(KvmVcpuHandle vcpu)
    {
        if (Libc.Ioctl(vcpu.Fd, KVM_RUN, 0) == 0) return 0;
        int errno = Marshal.GetLastPInvokeError();
        if (errno is Libc.EINTR or Libc.EAGAIN) return errno;
        throw new NativeCallException("KVM_RUN", errno);
    }

    public static kvm_regs GetRegs(KvmVcpuHandle vcpu) { kvm_regs r; Check(Libc.Ioctl(vcpu.Fd, KVM_GET_REGS, &r), "KVM_GET_REGS"); return r; }
    public static void SetRegs(KvmVcpuHandle vcpu, in kvm_regs regs) { fixed (kvm_regs* p = &regs) Check(Libc.Ioctl(vcpu.Fd, KVM_SET_REGS, p), "KVM_SET_REGS"); }
    public static kvm_sregs GetSregs(KvmVcpuHandle vcpu) { kvm_sregs s; Check(Libc.Ioctl(vcpu.Fd, KVM_GET_SREGS, &s), "KVM_GET_SREGS"); return s; }
    public static void SetSregs(KvmVcpuHandle vcpu, in kvm_sregs sregs) { fixed (kvm_sregs* p = &sregs) Check(Libc.Ioctl(vcpu.Fd, KVM_SET_SREGS, p), "KVM_SET_SREGS"); }
    public static kvm_fpu GetFpu(KvmVcpuHandle vcpu) { kvm_fpu f; Check(Libc.Ioctl(vcpu.Fd, KVM_GET_FPU, &f), "KVM_GET_FPU"); return f; }
    public static void SetFpu(KvmVcpuHandle vcpu, in kvm_fpu fpu) { fixed (kvm_fpu* p = &fpu) Check(Libc.Ioctl(vcpu.Fd, KVM_SET_FPU, p), "KVM_SET_FPU"); }
    public static void GetLapic(KvmVcpuHandle vcpu, out kvm_lapic_state lapic) { fixed (kvm_lapic_state* p = &lapic) Check(Libc.Ioctl(vcpu.Fd, KVM_GET_LAPIC, p), "KVM_GET_LAPIC"); }
    public static void SetLapic(KvmVcpuHandle vcpu, in kvm_lapic_state lapic) { fixed (kvm_lapic_state* p = &lapic) Check(Libc.Ioctl(vcpu.Fd, KVM_SET_LAPIC, p), "KVM_SET_LAPIC"); }

    public static uint GetMpState(KvmVcpuHandle vcpu) { kvm_mp_state s; Check(Libc.Ioctl(vcpu.Fd, KVM_GET_MP_STATE, &s), "KVM_GET_MP_STATE"); return s.mp_state; }
    public static void SetMpState(KvmVcpuHandle vcpu, uint state) { var s = new kvm_mp_state { mp_state = state }; Check(Libc.Ioctl(vcpu.Fd, KVM_SET_MP_STATE, &s), "KVM_SET_MP_STATE"); }

    public static void SetCpuid2(KvmVcpuHandle vcpu, ReadOnlySpan<kvm_cpuid_entry2> entries)
    {
        int bytes = sizeof(kvm_cpuid2) + entries.Length * sizeof(kvm_cpuid_entry2);
        byte[] buffer = new byte[bytes];
        fixed (byte* p = buffer)
        {
            ((kvm_cpuid2*)p)->nent = (uint)entries.Length;
            entries.CopyTo(new Span<kvm_cpuid_entry2>(p + sizeof(kvm_cpuid2), entries.Length));
            Check(Libc.Ioctl(vcpu.Fd, KVM_SET_CPUID2, p), "KVM_SET_CPUID2");
        }
    }

    /// <summary>KVM_SET_MSRS; returns how many were set (KVM stops at the first it rejects).</summary>
    public static int SetMsrs(KvmVcpuHandle vcpu, ReadOnlySpan<kvm_msr_entry> entries)
    {
        int bytes = sizeof(kvm_msrs) + entries.Length * sizeof(kvm_msr_entry);
        byte[] buffer = new byte[bytes];
        fixed (byte* p = buffer)
        {
            ((kvm_msrs*)p)->nmsrs = (uint)entries.Length;
            entries.CopyTo(new Span<kvm_msr_entry>(p + sizeof(kvm_msrs), entries.Length));
            return Check(Libc.Ioctl(vcpu.Fd, KVM_SET_MSRS, p), "KVM_SET_MSRS");
        }
    }

    public static void GetMsrs(KvmVcpuHandle vcpu, Span<kvm_msr_entry> entries)
    {
        int bytes = sizeof(kvm_msrs) + entries.Length * sizeof(kvm_msr_entry);
        byte[] buffer = new byte[bytes];
        fixed (byte* p = buffer)
        {
            ((kvm_msrs*)p)->nmsrs = (uint)entries.Length;
            entries.CopyTo(new Span<kvm_msr_entry>(p + sizeof(kvm_msrs), entries.Length));
            Check(Libc.Ioctl(vcpu.Fd, KVM_GET_MSRS, p), "KVM_GET_MSRS");
            new Span<kvm_msr_entry>(p + sizeof(kvm_msrs), entries.Length).CopyTo(entries);
        }
    }

    // --- machine state (snapshot/restore); each call copies a kernel struct in or out whole ---

    /// <summary>Size of the XSAVE buffer KVM_GET_XSAVE2 fills: KVM_CAP_XSAVE2 on the VM fd when reported, else the legacy 4096.</summary>
    public static int XsaveSize(KvmVmHandle vm) => Math.Max(KVM_XSAVE_LEGACY_SIZE, CheckExtension(vm, KVM_CAP_XSAVE2));

    /// <summary>KVM_GET_XSAVE2 (or KVM_GET_XSAVE for the legacy 4 KiB) into <paramref name="buffer"/>, whose length is <see cref="XsaveSize"/>.</summary>
    public static void GetXsave(KvmVcpuHandle vcpu, Span<byte> buffer)
    {
        if (buffer.Length < KVM_XSAVE_LEGACY_SIZE) throw new ArgumentException($"XSAVE buffer of {buffer.Length} bytes is below {KVM_XSAVE_LEGACY_SIZE}.");
        fixed (byte* p = buffer)
        {
            if (buffer.Length > KVM_XSAVE_LEGACY_SIZE) Check(Libc.Ioctl(vcpu.Fd, KVM_GET_XSAVE2, p), "KVM_GET_XSAVE2");
            else Check(Libc.Ioctl(vcpu.Fd, KVM_GET_XSAVE, p), "KVM_GET_XSAVE");
        }
    }

    public static void SetXsave(KvmVcpuHandle vcpu, ReadOnlySpan<byte> buffer)
    {
        if (buffer.Length < KVM_XSAVE_LEGACY_SIZE) throw new ArgumentException($"XSAVE buffer of {buffer.Length} bytes is below {KVM_XSAVE_LEGACY_SIZE}.");
        fixed (byte* p = buffer) Check(Libc.Ioctl(vcpu.Fd, KVM_SET_XSAVE, p), "KVM_SET_XSAVE");
    }

    public static kvm_xcrs GetXcrs(KvmVcpuHandle vcpu) { kvm_xcrs x; Check(Libc.Ioctl(vcpu.Fd, KVM_GET_XCRS, &x), "KVM_GET_XCRS"); return x; }
    public static void SetXcrs(KvmVcpuHandle vcpu, in kvm_xcrs xcrs) { fixed (kvm_xcrs* p = &xcrs) Check(Libc.Ioctl(vcpu.Fd, KVM_SET_XCRS, p), "KVM_SET_XCRS"); }
    public static kvm_vcpu_events GetVcpuEvents(KvmVcpuHandle vcpu) { kvm_vcpu_events e; Check(Libc.Ioctl(vcpu.Fd, KVM_GET_VCPU_EVENTS, &e), "KVM_GET_VCPU_EVENTS"); return e; }
    public static void SetVcpuEvents(KvmVcpuHandle vcpu, in kvm_vcpu_events events) { fixed (kvm_vcpu_events* p = &events) Check(Libc.Ioctl(vcpu.Fd, KVM_SET_VCPU_EVENTS, p), "KVM_SET_VCPU_EVENTS"); }
    public static kvm_debugregs GetDebugRegs(KvmVcpuHandle vcpu) { kvm_debugregs d; Check(Libc.Ioctl(vcpu.Fd, KVM_GET_DEBUGREGS, &d), "KVM_GET_DEBUGREGS"); return d; }
    public static void SetDebugRegs(KvmVcpuHandle vcpu, in kvm_debugregs regs) { fixed (kvm_debugregs* p = &regs) Check(Libc.Ioctl(vcpu.Fd, KVM_SET_DEBUGREGS, p), "KVM_SET_DEBUGREGS"); }

    /// <summary>KVM_GET_MSRS; returns how many entries were read (KVM stops at the first it cannot read).</summary>
    public static int TryGetMsrs(KvmVcpuHandle vcpu, Span<kvm_msr_entry> entries)
    {
        int bytes = sizeof(kvm_msrs) + entries.Length * sizeof(kvm_msr_entry);
        byte[] buffer = new byte[bytes];
        fixed (byte* p = buffer)
        {
            ((kvm_msrs*)p)->nmsrs = (uint)entries.Length;
            entries.CopyTo(new Span<kvm_msr_entry>(p + sizeof(kvm_msrs), entries.Length));
            int read = Check(Libc.Ioctl(vcpu.Fd, KVM_GET_MSRS, p), "KVM_GET_MSRS");
            new Span<kvm_msr_entry>(p + sizeof(kvm_msrs), entries.Length).CopyTo(entries);
            return read;
        }
    }

    public static kvm_irqchip GetIrqchip(KvmVmHandle vm, uint chipId)
    {
        var chip = new kvm_irqchip { chip_id = chipId };
        Check(Libc.Ioctl(vm.Fd, KVM_GET_IRQCHIP, &chip), "KVM_GET_IRQCHIP");
        return chip;
    }

    public static void SetIrqchip(KvmVmHandle vm, in kvm_irqchip chip) { fixed (kvm_irqchip* p = &chip) Check(Libc.Ioctl(vm.Fd, KVM_SET_IRQCHIP, p), "KVM_SET_IRQCHIP"); }
    public static kvm_pit_state2 GetPit2(KvmVmHandle vm) { kvm_pit_state2 s; Check(Libc.Ioctl(vm.Fd, KVM_GET_PIT2, &s), "KVM_GET_PIT2"); return s; }
    public static void SetPit2(KvmVmHandle vm, in kvm_pit_state2 state) { fixed (kvm_pit_state2* p = &state) Check(Libc.Ioctl(vm.Fd, KVM_SET_PIT2, p), "KVM_SET_PIT2"); }
    public static kvm_clock_data GetClock(KvmVmHandle vm) { kvm_clock_data c; Check(Libc.Ioctl(vm.Fd, KVM_GET_CLOCK, &c), "KVM_GET_CLOCK"); return c; }
    public static void SetClock(KvmVmHandle vm, in kvm_clock_data clock) { fixed (kvm_clock_data* p = &clock) Check(Libc.Ioctl(vm.Fd, KVM_SET_CLOCK, p), "KVM_SET_CLOCK"); }

    public static void EnableCap(KvmVmHandle vm, uint capability, ulong arg0)
    {
        var request = new kvm_enable_cap { cap = capability };
        request.args[0] = arg0;
        Check(Libc.Ioctl(vm.Fd, KVM_ENABLE_CAP, &request), "KVM_ENABLE_CAP");
    }

    /// <summary>KVM_GET_DIRTY_LOG of one memory slot into <paramref name="bitmap"/> (one bit per page, 64-bit words).</summary>
    public static void GetDirtyLog(KvmVmHandle vm, uint slot, Span<ulong> bitmap)
    {
        fixed (ulong* p = bitmap)
        {
            var log = new kvm_dirty_log { slot = slot, dirty_bitmap = (ulong)p };
            Check(Libc.Ioctl(vm.Fd, KVM_GET_DIRTY_LOG, &log), "KVM_GET_DIRTY_LOG");
        }
    }

    /// <summary>KVM_CLEAR_DIRTY_LOG (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2): re-protects the pages set in <paramref name="bitmap"/>, from <paramref name="firstPage"/> (a multiple of 64).</summary>
    public static void ClearDirtyLog(KvmVmHandle vm, uint slot, ulong firstPage, uint pageCount, ReadOnlySpan<ulong> bitmap)
    {
        fixed (ulong* p = bitmap)
        {
            var clear = new kvm_clear_dirty_log { slot = slot, first_page = firstPage, num_pages = pageCount, dirty_bitmap = (ulong)p };
            Check(Libc.Ioctl(vm.Fd, KVM_CLEAR_DIRTY_LOG, &clear), "KVM_CLEAR_DIRTY_LOG");
        }
    }

    /// <summary>
    /// KVM_CAP_DIRTY_LOG_RING (the acquire/release flavour when offered): the largest ring this host's KVM allows, in
    /// bytes, or 0 when it has none.
    /// </summary>
    public static (int Capability, int MaxBytes) DirtyRingSupport(KvmVmHandle vm)
    {
        int acqRel = CheckExtension(vm, KVM_CAP_DIRTY_LOG_RING_ACQ_REL);
        if (acqRel > 0) return (KVM_CAP_DIRTY_LOG_RING_ACQ_REL, acqRel);
        return (KVM_CAP_DIRTY_LOG_RING, Math.Max(0, CheckExtension(vm, KVM_CAP_DIRTY_LOG_RING)));
    }

    /// <summary>Maps a vCPU's dirty ring (<paramref name="bytes"/>, as enabled), read-write, at page KVM_DIRTY_LOG_PAGE_OFFSET of its fd.</summary>
    public static nint MapDirtyRing(KvmVcpuHandle vcpu, int bytes)
    {
        nint p = Libc.Mmap(0, (nuint)bytes, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED, vcpu.Fd, (long)KVM_DIRTY_LOG_PAGE_OFFSET * Environment.SystemPageSize);
        if (p == Libc.MAP_FAILED) throw NativeCallException.FromLastError("mmap(dirty ring)");
        return p;
    }

    /// <summary>KVM_RESET_DIRTY_RINGS: re-protects the pages of every entry marked reset; returns how many.</summary>
    public static int ResetDirtyRings(KvmVmHandle vm)
    {
        int n = Libc.Ioctl(vm.Fd, KVM_RESET_DIRTY_RINGS, (void*)0);
        Check(n, "KVM_RESET_DIRTY_RINGS");
        return n;
    }

    /// <summary>Maps the vCPU's shared kvm_run page(s).</summary>
    public static nint MapRun(KvmVcpuHandle vcpu, int mmapSize)
    {
        nint p = Libc.Mmap(0, (nuint)mmapSize, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED, vcpu.Fd, 0);
        if (p == Libc.MAP_FAILED) throw NativeCallException.FromLastError("mmap(kvm_run)");
        return p;
    }

    /// <summary>
    /// True when this host's KVM is the PVM flavour (guest CPL0 emulated instruction by instruction). Read once: a
    /// jailed VMM's private root has no /sys, so the VMM reads it before its jail (VmmHost.EnterJail).
    /// </summary>
    public static bool IsNestedThroughPvm => NestedThroughPvm.Value;

    private static readonly Lazy<bool> NestedThroughPvm = new(() => Directory.Exists("/sys/module/kvm_pvm"));
}
