using KvmPS.Interop;

namespace KvmPS.Vm;

/// <summary>Initial CPU state: CPUID, MSRs, the LAPIC's LINT pins, and for the BSP the 64-bit boot state of docs/guest-layout.md.</summary>
public static unsafe class CpuSetup
{
    private const ulong CR0_PE = 1, CR0_MP = 2, CR0_ET = 0x10, CR0_NE = 0x20, CR0_WP = 0x10000, CR0_PG = 0x8000_0000;
    private const ulong CR4_PAE = 0x20, CR4_OSFXSR = 0x200, CR4_OSXMMEXCPT = 0x400;
    private const ulong EFER_SCE = 1, EFER_LME = 0x100, EFER_LMA = 0x400;
    public const ushort BootCodeSelector = 0x10, BootDataSelector = 0x18, BootTssSelector = 0x20;

    // GDT entries (flat): null, null, 64-bit code, data, TSS
    private static readonly ulong[] BootGdt = [0, 0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff, 0x0080_8b00_0000_0000];

    private const uint MSR_IA32_TSC = 0x10, MSR_IA32_SYSENTER_CS = 0x174, MSR_IA32_SYSENTER_ESP = 0x175, MSR_IA32_SYSENTER_EIP = 0x176;
    private const uint MSR_IA32_MISC_ENABLE = 0x1a0, MSR_MTRRdefType = 0x2ff;
    private const uint MSR_K7_HWCR = 0xc001_0015;
    private const ulong HWCR_TSC_FREQ_SEL = 1UL << 24;
    private const uint MSR_STAR = 0xc000_0081, MSR_LSTAR = 0xc000_0082, MSR_CSTAR = 0xc000_0083, MSR_SYSCALL_MASK = 0xc000_0084, MSR_KERNEL_GS_BASE = 0xc000_0102;

    private const int APIC_LVT_LINT0 = 0x350, APIC_LVT_LINT1 = 0x360;
    private const uint APIC_MODE_EXTINT = 0x7, APIC_MODE_NMI = 0x4;

    /// <summary>Identity map of the low 4 GiB with 2 MiB pages, and the boot GDT.</summary>
    public static void WriteBootPageTablesAndGdt(GuestMemory memory)
    {
        memory.Fill(MemoryLayout.Pml4Address, 0x6000, 0);
        memory.WriteUInt64(MemoryLayout.Pml4Address, MemoryLayout.PdptAddress | 0x3);
        for (ulong i = 0; i < 4; i++)
        {
            ulong pd = MemoryLayout.PdAddress + i * 0x1000;
            memory.WriteUInt64(MemoryLayout.PdptAddress + i * 8, pd | 0x3);
            for (ulong j = 0; j < 512; j++)
                memory.WriteUInt64(pd + j * 8, ((i * 512 + j) << 21) | 0x83); // present, writable, 2 MiB page
        }
        for (int i = 0; i < BootGdt.Length; i++) memory.WriteUInt64(MemoryLayout.BootGdtAddress + (ulong)i * 8, BootGdt[i]);
        memory.WriteUInt64(MemoryLayout.BootIdtAddress, 0);
    }

    private static kvm_segment Segment(ushort selector, ulong descriptor) => new()
    {
        selector = selector,
        @base = ((descriptor >> 16) & 0xff_ffff) | (((descriptor >> 56) & 0xff) << 24),
        limit = (uint)((descriptor & 0xffff) | (((descriptor >> 48) & 0xf) << 16)),
        type = (byte)((descriptor >> 40) & 0xf),
        s = (byte)((descriptor >> 44) & 1),
        dpl = (byte)((descriptor >> 45) & 3),
        present = (byte)((descriptor >> 47) & 1),
        avl = (byte)((descriptor >> 52) & 1),
        l = (byte)((descriptor >> 53) & 1),
        db = (byte)((descriptor >> 54) & 1),
        g = (byte)((descriptor >> 55) & 1),
    };

    /// <summary>Puts the BSP at <paramref name="entry"/> in 64-bit mode with RSI = boot_params.</summary>
    public static void SetupBootProcessor(KvmVcpuHandle vcpu, ulong entry)
    {
        var sregs = Kvm.GetSregs(vcpu);
        var code = Segment(BootCodeSelector, BootGdt[2]);
        var data = Segment(BootDataSelector, BootGdt[3]);
        sregs.cs = code;
        sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
        sregs.tr = Segment(BootTssSelector, BootGdt[4]);
        sregs.tr.limit = 0x67; sregs.tr.type = 11; // busy 64-bit TSS
        sregs.gdt.@base = MemoryLayout.BootGdtAddress;
        sregs.gdt.limit = (ushort)(BootGdt.Length * 8 - 1);
        sregs.idt.@base = MemoryLayout.BootIdtAddress;
        sregs.idt.limit = 0;
        sregs.cr3 = MemoryLayout.Pml4Address;
        sregs.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
        sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
        sregs.efer = EFER_LME | EFER_LMA | EFER_SCE;
        Kvm.SetSregs(vcpu, sregs);

        var regs = new kvm_regs
        {
            rflags = 0x2,
            rip = entry,
            rsp = MemoryLayout.BootStackPointer,
            rbp = MemoryLayout.BootStackPointer,
            rsi = MemoryLayout.ZeroPageAddress,
        };
        Kvm.SetRegs(vcpu, regs);

        var fpu = new kvm_fpu { fcw = 0x37f, mxcsr = 0x1f80 };
        Kvm.SetFpu(vcpu, fpu);
    }

    /// <param name="setTsc">Zero the TSC (boot vCPUs, created together); a hot-added vCPU keeps the TSC KVM synchronized with the others.</param>
    public static void SetupMsrs(KvmVcpuHandle vcpu, ReadOnlySpan<kvm_cpuid_entry2> cpuid, bool setTsc = true)
    {
        ReadOnlySpan<kvm_msr_entry> all =
        [
            new() { index = MSR_IA32_SYSENTER_CS }, new() { index = MSR_IA32_SYSENTER_ESP }, new() { index = MSR_IA32_SYSENTER_EIP },
            new() { index = MSR_STAR }, new() { index = MSR_CSTAR }, new() { index = MSR_KERNEL_GS_BASE },
            new() { index = MSR_SYSCALL_MASK }, new() { index = MSR_LSTAR },
            new() { index = MSR_IA32_MISC_ENABLE, data = 1 }, // fast string operations
            new() { index = MSR_MTRRdefType, data = (1 << 11) | 6 }, // MTRRs enabled, write-back by default
            new() { index = MSR_IA32_TSC },
        ];
        var msrs = setTsc ? all : all[..^1];
        int set = Kvm.SetMsrs(vcpu, msrs);
        if (set != msrs.Length) throw new InvalidOperationException($"KVM_SET_MSRS accepted {set} of {msrs.Length} MSRs (rejected MSR 0x{msrs[set].index:x}).");
        if (TscCountsAtP0Frequency(cpuid)) SetTscFreqSel(vcpu);
    }

    /// <summary>
    /// AMD with an invariant TSC (CPUID 0x8000_0007 EDX bit 8): real firmware sets HWCR.TscFreqSel (bit 24), and Linux
    /// reports "[Firmware Bug]: TSC doesn't count with P0 frequency!" when it is clear. KVM before 6.7 leaves it clear.
    /// </summary>
    internal static bool TscCountsAtP0Frequency(ReadOnlySpan<kvm_cpuid_entry2> cpuid)
    {
        bool amd = false, invariantTsc = false;
        foreach (var e in cpuid)
        {
            // "AuthenticAMD": EBX "Auth", EDX "enti", ECX "cAMD".
            if (e.function == 0) amd = e.ebx == 0x6874_7541 && e.edx == 0x6974_6e65 && e.ecx == 0x444d_4163;
            if (e.function == 0x8000_0007) invariantTsc = (e.edx & (1u << 8)) != 0;
        }
        return amd && invariantTsc;
    }

    private static void SetTscFreqSel(KvmVcpuHandle vcpu)
    {
        Span<kvm_msr_entry> hwcr = [new() { index = MSR_K7_HWCR }];
        Kvm.GetMsrs(vcpu, hwcr);
        hwcr[0].data |= HWCR_TSC_FREQ_SEL;
        // A KVM that does not virtualize the bit refuses the write: the guest then only logs the message above.
        Kvm.SetMsrs(vcpu, hwcr);
    }

    /// <summary>LINT0 as ExtINT (the 8259 path) and LINT1 as NMI, as firmware leaves them.</summary>
    public static void SetupLapic(KvmVcpuHandle vcpu)
    {
        Kvm.GetLapic(vcpu, out var lapic);
        ref uint lint0 = ref *(uint*)(lapic.regs + APIC_LVT_LINT0);
        ref uint lint1 = ref *(uint*)(lapic.regs + APIC_LVT_LINT1);
        lint0 = (lint0 & ~0x700u) | (APIC_MODE_EXTINT << 8);
        lint1 = (lint1 & ~0x700u) | (APIC_MODE_NMI << 8);
        Kvm.SetLapic(vcpu, lapic);
    }

    /// <summary>Per-vCPU CPUID: the host's supported set with this vCPU's APIC ID and the topology of <paramref name="maxVcpus"/>.</summary>
    public static kvm_cpuid_entry2[] CpuidFor(ReadOnlySpan<kvm_cpuid_entry2> supported, uint apicId, int maxVcpus)
    {
        var entries = supported.ToArray();
        int shift = 0;
        while ((1 << shift) < maxVcpus) shift++;
        for (int i = 0; i < entries.Length; i++)
        {
            ref var e = ref entries[i];
            switch (e.function)
            {
                case 1:
                    e.ebx = (e.ebx & 0x0000_ffff) | (apicId << 24) | ((uint)Math.Min(maxVcpus, 255) << 16);
                    e.ecx |= 1u << 31; // running under a hypervisor
                    e.edx |= 1u << 28; // HTT: the logical-processor count in EBX is valid
                    break;
                case 0xb:
                case 0x1f:
                    // Extended topology: one thread per core, all cores in one package.
                    if (e.index == 0) { e.eax = 0; e.ebx = 1; e.ecx = 1u << 8; }
                    else if (e.index == 1) { e.eax = (uint)shift; e.ebx = (uint)maxVcpus; e.ecx = (2u << 8) | 1; }
                    else { e.eax = 0; e.ebx = 0; e.ecx = e.index; }
                    e.edx = apicId;
                    break;
                case 4:
                    // Deterministic cache parameters: cores per package - 1 in EAX[31:26].
                    e.eax = (e.eax & 0x03ff_ffff) | ((uint)Math.Min(maxVcpus - 1, 63) << 26);
                    break;
            }
        }
        return entries;
    }
}
