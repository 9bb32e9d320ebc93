using System.Runtime.InteropServices;

namespace KvmPS.Interop;

// Layouts of the structs that cross into the kernel, named as in <linux/kvm.h> and <asm/kvm.h>.
// Sizes and offsets are checked against the headers by tests/KvmPS.Engine.Tests/Interop/KvmLayoutTests.

#pragma warning disable CS0649 // fields are written by the kernel

[StructLayout(LayoutKind.Sequential)]
public struct kvm_regs
{
    public ulong rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp;
    public ulong r8, r9, r10, r11, r12, r13, r14, r15;
    public ulong rip, rflags;
}

[StructLayout(LayoutKind.Sequential)]
public struct kvm_segment
{
    public ulong @base;
    public uint limit;
    public ushort selector;
    public byte type, present, dpl, db, s, l, g, avl, unusable, padding;
}

[StructLayout(LayoutKind.Sequential)]
public struct kvm_dtable
{
    public ulong @base;
    public ushort limit;
    public ushort padding0, padding1, padding2;
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct kvm_sregs
{
    public kvm_segment cs, ds, es, fs, gs, ss, tr, ldt;
    public kvm_dtable gdt, idt;
    public ulong cr0, cr2, cr3, cr4, cr8, efer, apic_base;
    public fixed ulong interrupt_bitmap[4]; // (KVM_NR_INTERRUPTS + 63) / 64
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct kvm_fpu
{
    public fixed byte fpr[128];
    public ushort fcw, fsw;
    public byte ftwx, pad1;
    public ushort last_opcode;
    public ulong last_ip, last_dp;
    public fixed byte xmm[256];
    public uint mxcsr, pad2;
}

[StructLayout(LayoutKind.Sequential)]
public struct kvm_userspace_memory_region
{
    public uint slot, flags;
    public ulong guest_phys_addr, memory_size, userspace_addr;
}

[StructLayout(LayoutKind.Sequential)]
public struct kvm_cpuid_entry2
{
    public uint function, index, flags, eax, ebx, ecx, edx;
    public uint padding0, padding1, padding2;
}

/// <summary>Header of <c>struct kvm_cpuid2</c>; <c>entries[nent]</c> follows.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct kvm_cpuid2
{
    public uint nent, padding;
}

[StructLayout(LayoutKind.Sequential)]
public struct kvm_msr_entry
{
    public uint index, reserved;
    public ulong data;
}

/// <summary>Header of <c>struct kvm_msrs</c>; <c>entries[nmsrs]</c> follows.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct kvm_msrs
{
    public uint nmsrs, pad;
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct kvm_lapic_state
{
    public fixed byte regs[1024];
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct kvm_pit_config
{
    public uint flags;
    public fixed uint pad[15];
}

[StructLayout(LayoutKind.Sequential)]
public struct kvm_irq_level
{
    public uint irq; // union { irq, status }
    public uint level;
}

[StructLayout(LayoutKind.Sequential)]
public struct kvm_mp_state
{
    public uint mp_state;
}

/// <summary>Header of <c>struct kvm_irq_routing</c>; <c>entries[nr]</c> follows.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct kvm_irq_routing
{
    public uint nr, flags;
}

[StructLayout(LayoutKind.Explicit, Size = 48)]
public struct kvm_irq_routing_entry
{
    [FieldOffset(0)] public uint gsi;
    [FieldOffset(4)] public uint type;
    [FieldOffset(8)] public uint flags;
    [FieldOffset(12)] public uint pad;
    // u.irqchip
    [FieldOffset(16)] public uint irqchip_irqchip;
    [FieldOffset(20)] public uint irqchip_pin;
    // u.msi
    [FieldOffset(16)] public uint msi_address_lo;
    [FieldOffset(20)] public uint msi_address_hi;
    [FieldOffset(24)] public uint msi_data;
    [FieldOffset(28)] public uint msi_devid;
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct kvm_irqfd
{
    public uint fd, gsi, flags, resamplefd;
    public fixed byte pad[16];
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct kvm_ioeventfd
{
    public ulong datamatch, addr;
    public uint len;
    public int fd;
    public uint flags;
    public fixed byte pad[36];
}

/// <summary>The shared <c>struct kvm_run</c> page header and the exit-union members the engine reads.</summary>
[StructLayout(LayoutKind.Explicit)]
public unsafe struct kvm_run
{
    [FieldOffset(0)] public byte request_interrupt_window;
    [FieldOffset(1)] public byte immediate_exit;
    [FieldOffset(8)] public uint exit_reason;
    [FieldOffset(12)] public byte ready_for_interrupt_injection;
    [FieldOffset(13)] public byte if_flag;
    [FieldOffset(14)] public ushort flags;
    [FieldOffset(16)] public ulong cr8;
    [FieldOffset(24)] public ulong apic_base;
    [FieldOffset(32)] public kvm_run_io io;
    [FieldOffset(32)] public kvm_run_mmio mmio;
    [FieldOffset(32)] public kvm_run_internal @internal;
    [FieldOffset(32)] public kvm_run_system_event system_event;
    [FieldOffset(32)] public kvm_run_fail_entry fail_entry;
    [FieldOffset(32)] public ulong hw_hardware_exit_reason;
    [FieldOffset(288)] public ulong kvm_valid_regs;
    [FieldOffset(296)] public ulong kvm_dirty_regs;
}

[StructLayout(LayoutKind.Sequential)]
public struct kvm_run_io
{
    public byte direction, size;
    public ushort port;
    public uint count;
    public ulong data_offset;
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct kvm_run_mmio
{
    public ulong phys_addr;
    public fixed byte data[8];
    public uint len;
    public byte is_write;
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct kvm_run_internal
{
    public uint suberror, ndata;
    public fixed ulong data[16];
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct kvm_run_system_event
{
    public uint type, ndata;
    public fixed ulong data[16];
}

[StructLayout(LayoutKind.Sequential)]
public struct kvm_run_fail_entry
{
    public ulong hardware_entry_failure_reason;
    public uint cpu;
}

// --- machine state (snapshot/restore) ---

/// <summary><c>struct kvm_xsave</c> in its 4 KiB legacy size; KVM_GET_XSAVE2 may use more (KVM_CAP_XSAVE2), so callers pass buffers.</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct kvm_xsave
{
    public fixed uint region[1024];
}

[StructLayout(LayoutKind.Sequential)]
public struct kvm_xcr
{
    public uint xcr, reserved;
    public ulong value;
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct kvm_xcrs
{
    public uint nr_xcrs, flags;
    public fixed byte xcrs[16 * 16]; // struct kvm_xcr xcrs[KVM_MAX_XCRS]
    public fixed ulong padding[16];
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct kvm_vcpu_events
{
    // exception
    public byte exception_injected, exception_nr, exception_has_error_code, exception_pending;
    public uint exception_error_code;
    // interrupt
    public byte interrupt_injected, interrupt_nr, interrupt_soft, interrupt_shadow;
    // nmi
    public byte nmi_injected, nmi_pending, nmi_masked, nmi_pad;
    public uint sipi_vector, flags;
    // smi
    public byte smi_smm, smi_pending, smi_smm_inside_nmi, smi_latched_init;
    public byte triple_fault_pending;
    public fixed byte reserved[26];
    public byte exception_has_payload;
    public ulong exception_payload;
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct kvm_debugregs
{
    public fixed ulong db[4];
    public ulong dr6, dr7, flags;
    public fixed ulong reserved[9];
}

/// <summary><c>struct kvm_irqchip</c>: chip_id selects the PIC master, PIC slave or IOAPIC; the chip union is kept as raw bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct kvm_irqchip
{
    public uint chip_id, pad;
    public fixed byte chip[512];
}

[StructLayout(LayoutKind.Sequential)]
public struct kvm_pit_channel_state
{
    public uint count;
    public ushort latched_count;
    public byte count_latched, status_latched, status, read_state, write_state, write_latch, rw_mode, mode, bcd, gate;
    public long count_load_time;
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct kvm_pit_state2
{
    public kvm_pit_channel_state channel0, channel1, channel2; // channels[3]
    public uint flags;
    public fixed uint reserved[9];
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct kvm_clock_data
{
    public ulong clock;
    public uint flags, pad0;
    public ulong realtime, host_tsc;
    public fixed uint pad[4];
}

/// <summary>One entry of a vCPU's dirty ring: a page of <c>slot</c> (address space in the high 16 bits) at page <c>offset</c>.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct kvm_dirty_gfn
{
    public uint flags, slot;
    public ulong offset;
}

[StructLayout(LayoutKind.Sequential)]
public struct kvm_dirty_log
{
    public uint slot, padding1;
    public ulong dirty_bitmap; // void* (union with __u64 padding2)
}

[StructLayout(LayoutKind.Sequential)]
public struct kvm_clear_dirty_log
{
    public uint slot, num_pages;
    public ulong first_page;
    public ulong dirty_bitmap; // void*
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct kvm_enable_cap
{
    public uint cap, flags;
    public fixed ulong args[4];
    public fixed byte pad[64];
}
