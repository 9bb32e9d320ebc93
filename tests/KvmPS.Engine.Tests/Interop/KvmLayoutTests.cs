using System.Runtime.InteropServices;
using System.Text;
using KvmPS.Engine.Tests.Support;
using KvmPS.Interop;
using Xunit;

namespace KvmPS.Engine.Tests.Interop;

/// <summary>Every struct and ioctl number that crosses into the kernel, checked against &lt;linux/kvm.h&gt; by a compiled C program.</summary>
public class KvmLayoutTests
{
    // (C# type, C type, fields as (C# field, C member expression))
    private static readonly (Type Type, string CType, (string Cs, string C)[] Fields)[] Structs =
    [
        (typeof(kvm_regs), "struct kvm_regs", [("rax", "rax"), ("rsi", "rsi"), ("r8", "r8"), ("r15", "r15"), ("rip", "rip"), ("rflags", "rflags")]),
        (typeof(kvm_segment), "struct kvm_segment", [("base", "base"), ("limit", "limit"), ("selector", "selector"), ("type", "type"), ("present", "present"), ("l", "l"), ("unusable", "unusable")]),
        (typeof(kvm_dtable), "struct kvm_dtable", [("base", "base"), ("limit", "limit")]),
        (typeof(kvm_sregs), "struct kvm_sregs", [("cs", "cs"), ("ldt", "ldt"), ("gdt", "gdt"), ("idt", "idt"), ("cr0", "cr0"), ("cr3", "cr3"), ("efer", "efer"), ("apic_base", "apic_base"), ("interrupt_bitmap", "interrupt_bitmap")]),
        (typeof(kvm_fpu), "struct kvm_fpu", [("fcw", "fcw"), ("last_ip", "last_ip"), ("xmm", "xmm"), ("mxcsr", "mxcsr")]),
        (typeof(kvm_userspace_memory_region), "struct kvm_userspace_memory_region", [("slot", "slot"), ("flags", "flags"), ("guest_phys_addr", "guest_phys_addr"), ("memory_size", "memory_size"), ("userspace_addr", "userspace_addr")]),
        (typeof(kvm_cpuid_entry2), "struct kvm_cpuid_entry2", [("function", "function"), ("index", "index"), ("flags", "flags"), ("eax", "eax"), ("edx", "edx")]),
        (typeof(kvm_cpuid2), "struct kvm_cpuid2", [("nent", "nent")]),
        (typeof(kvm_msr_entry), "struct kvm_msr_entry", [("index", "index"), ("data", "data")]),
        (typeof(kvm_msrs), "struct kvm_msrs", [("nmsrs", "nmsrs")]),
        (typeof(kvm_lapic_state), "struct kvm_lapic_state", [("regs", "regs")]),
        (typeof(kvm_pit_config), "struct kvm_pit_config", [("flags", "flags"), ("pad", "pad")]),
        (typeof(kvm_irq_level), "struct kvm_irq_level", [("irq", "irq"), ("level", "level")]),
        (typeof(kvm_mp_state), "struct kvm_mp_state", [("mp_state", "mp_state")]),
        (typeof(kvm_irq_routing), "struct kvm_irq_routing", [("nr", "nr"), ("flags", "flags")]),
        (typeof(kvm_irq_routing_entry), "struct kvm_irq_routing_entry", [("gsi", "gsi"), ("type", "type"), ("flags", "flags"), ("irqchip_irqchip", "u.irqchip.irqchip"), ("irqchip_pin", "u.irqchip.pin"), ("msi_address_lo", "u.msi.address_lo"), ("msi_address_hi", "u.msi.address_hi"), ("msi_data", "u.msi.data"), ("msi_devid", "u.msi.devid")]),
        (typeof(kvm_irqfd), "struct kvm_irqfd", [("fd", "fd"), ("gsi", "gsi"), ("flags", "flags"), ("resamplefd", "resamplefd")]),
        (typeof(kvm_ioeventfd), "struct kvm_ioeventfd", [("datamatch", "datamatch"), ("addr", "addr"), ("len", "len"), ("fd", "fd"), ("flags", "flags")]),
        // machine state (snapshot/restore)
        (typeof(kvm_xsave), "struct kvm_xsave", [("region", "region")]),
        (typeof(kvm_xcr), "struct kvm_xcr", [("xcr", "xcr"), ("value", "value")]),
        (typeof(kvm_xcrs), "struct kvm_xcrs", [("nr_xcrs", "nr_xcrs"), ("flags", "flags"), ("xcrs", "xcrs"), ("padding", "padding")]),
        (typeof(kvm_vcpu_events), "struct kvm_vcpu_events", [("exception_injected", "exception.injected"), ("exception_pending", "exception.pending"),
            ("exception_error_code", "exception.error_code"), ("interrupt_injected", "interrupt.injected"), ("interrupt_shadow", "interrupt.shadow"),
            ("nmi_injected", "nmi.injected"), ("nmi_masked", "nmi.masked"), ("sipi_vector", "sipi_vector"), ("flags", "flags"), ("smi_smm", "smi.smm"),
            ("smi_latched_init", "smi.latched_init"), ("triple_fault_pending", "triple_fault.pending"), ("reserved", "reserved"),
            ("exception_has_payload", "exception_has_payload"), ("exception_payload", "exception_payload")]),
        (typeof(kvm_debugregs), "struct kvm_debugregs", [("db", "db"), ("dr6", "dr6"), ("dr7", "dr7"), ("flags", "flags"), ("reserved", "reserved")]),
        (typeof(kvm_irqchip), "struct kvm_irqchip", [("chip_id", "chip_id"), ("chip", "chip")]),
        (typeof(kvm_pit_channel_state), "struct kvm_pit_channel_state", [("count", "count"), ("latched_count", "latched_count"), ("status", "status"),
            ("mode", "mode"), ("gate", "gate"), ("count_load_time", "count_load_time")]),
        (typeof(kvm_pit_state2), "struct kvm_pit_state2", [("channel0", "channels[0]"), ("channel1", "channels[1]"), ("channel2", "channels[2]"), ("flags", "flags"), ("reserved", "reserved")]),
        (typeof(kvm_clock_data), "struct kvm_clock_data", [("clock", "clock"), ("flags", "flags"), ("realtime", "realtime"), ("host_tsc", "host_tsc"), ("pad", "pad")]),
        (typeof(kvm_dirty_gfn), "struct kvm_dirty_gfn", [("flags", "flags"), ("slot", "slot"), ("offset", "offset")]),
        (typeof(kvm_dirty_log), "struct kvm_dirty_log", [("slot", "slot"), ("dirty_bitmap", "dirty_bitmap")]),
        (typeof(kvm_clear_dirty_log), "struct kvm_clear_dirty_log", [("slot", "slot"), ("num_pages", "num_pages"), ("first_page", "first_page"), ("dirty_bitmap", "dirty_bitmap")]),
        (typeof(kvm_enable_cap), "struct kvm_enable_cap", [("cap", "cap"), ("flags", "flags"), ("args", "args"), ("pad", "pad")]),
    ];

    private static readonly (string Cs, string C)[] KvmRunFields =
    [
        ("request_interrupt_window", "request_interrupt_window"), ("immediate_exit", "immediate_exit"), ("exit_reason", "exit_reason"),
        ("ready_for_interrupt_injection", "ready_for_interrupt_injection"), ("if_flag", "if_flag"), ("flags", "flags"), ("cr8", "cr8"), ("apic_base", "apic_base"),
        ("io", "io"), ("mmio", "mmio"), ("internal", "internal"), ("system_event", "system_event"), ("fail_entry", "fail_entry"),
        ("hw_hardware_exit_reason", "hw.hardware_exit_reason"), ("kvm_valid_regs", "kvm_valid_regs"), ("kvm_dirty_regs", "kvm_dirty_regs"),
    ];

    private static readonly (Type Type, string CType, (string Cs, string C)[] Fields)[] ExitUnionMembers =
    [
        (typeof(kvm_run_io), "io", [("direction", "direction"), ("size", "size"), ("port", "port"), ("count", "count"), ("data_offset", "data_offset")]),
        (typeof(kvm_run_mmio), "mmio", [("phys_addr", "phys_addr"), ("data", "data"), ("len", "len"), ("is_write", "is_write")]),
        (typeof(kvm_run_internal), "internal", [("suberror", "suberror"), ("ndata", "ndata"), ("data", "data")]),
        (typeof(kvm_run_system_event), "system_event", [("type", "type"), ("ndata", "ndata"), ("data", "data")]),
        (typeof(kvm_run_fail_entry), "fail_entry", [("hardware_entry_failure_reason", "hardware_entry_failure_reason"), ("cpu", "cpu")]),
    ];

    private static readonly (string Name, nuint Value)[] Ioctls =
    [
        ("KVM_GET_API_VERSION", KvmConstants.KVM_GET_API_VERSION), ("KVM_CREATE_VM", KvmConstants.KVM_CREATE_VM),
        ("KVM_GET_MSR_INDEX_LIST", KvmConstants.KVM_GET_MSR_INDEX_LIST), ("KVM_CHECK_EXTENSION", KvmConstants.KVM_CHECK_EXTENSION),
        ("KVM_GET_VCPU_MMAP_SIZE", KvmConstants.KVM_GET_VCPU_MMAP_SIZE), ("KVM_GET_SUPPORTED_CPUID", KvmConstants.KVM_GET_SUPPORTED_CPUID),
        ("KVM_CREATE_VCPU", KvmConstants.KVM_CREATE_VCPU), ("KVM_SET_USER_MEMORY_REGION", KvmConstants.KVM_SET_USER_MEMORY_REGION),
        ("KVM_SET_TSS_ADDR", KvmConstants.KVM_SET_TSS_ADDR), ("KVM_SET_IDENTITY_MAP_ADDR", KvmConstants.KVM_SET_IDENTITY_MAP_ADDR),
        ("KVM_CREATE_IRQCHIP", KvmConstants.KVM_CREATE_IRQCHIP), ("KVM_IRQ_LINE", KvmConstants.KVM_IRQ_LINE),
        ("KVM_SET_GSI_ROUTING", KvmConstants.KVM_SET_GSI_ROUTING), ("KVM_IRQFD", KvmConstants.KVM_IRQFD),
        ("KVM_CREATE_PIT2", KvmConstants.KVM_CREATE_PIT2), ("KVM_IOEVENTFD", KvmConstants.KVM_IOEVENTFD),
        ("KVM_RUN", KvmConstants.KVM_RUN), ("KVM_GET_REGS", KvmConstants.KVM_GET_REGS), ("KVM_SET_REGS", KvmConstants.KVM_SET_REGS),
        ("KVM_GET_SREGS", KvmConstants.KVM_GET_SREGS), ("KVM_SET_SREGS", KvmConstants.KVM_SET_SREGS),
        ("KVM_GET_MSRS", KvmConstants.KVM_GET_MSRS), ("KVM_SET_MSRS", KvmConstants.KVM_SET_MSRS),
        ("KVM_GET_FPU", KvmConstants.KVM_GET_FPU), ("KVM_SET_FPU", KvmConstants.KVM_SET_FPU),
        ("KVM_GET_LAPIC", KvmConstants.KVM_GET_LAPIC), ("KVM_SET_LAPIC", KvmConstants.KVM_SET_LAPIC),
        ("KVM_SET_CPUID2", KvmConstants.KVM_SET_CPUID2), ("KVM_GET_MP_STATE", KvmConstants.KVM_GET_MP_STATE), ("KVM_SET_MP_STATE", KvmConstants.KVM_SET_MP_STATE),
        ("KVM_GET_XSAVE", KvmConstants.KVM_GET_XSAVE), ("KVM_SET_XSAVE", KvmConstants.KVM_SET_XSAVE), ("KVM_GET_XSAVE2", KvmConstants.KVM_GET_XSAVE2),
        ("KVM_GET_XCRS", KvmConstants.KVM_GET_XCRS), ("KVM_SET_XCRS", KvmConstants.KVM_SET_XCRS),
        ("KVM_GET_VCPU_EVENTS", KvmConstants.KVM_GET_VCPU_EVENTS), ("KVM_SET_VCPU_EVENTS", KvmConstants.KVM_SET_VCPU_EVENTS),
        ("KVM_GET_DEBUGREGS", KvmConstants.KVM_GET_DEBUGREGS), ("KVM_SET_DEBUGREGS", KvmConstants.KVM_SET_DEBUGREGS),
        ("KVM_GET_IRQCHIP", KvmConstants.KVM_GET_IRQCHIP), ("KVM_SET_IRQCHIP", KvmConstants.KVM_SET_IRQCHIP),
        ("KVM_GET_PIT2", KvmConstants.KVM_GET_PIT2), ("KVM_SET_PIT2", KvmConstants.KVM_SET_PIT2),
        ("KVM_GET_CLOCK", KvmConstants.KVM_GET_CLOCK), ("KVM_SET_CLOCK", KvmConstants.KVM_SET_CLOCK), ("KVM_ENABLE_CAP", KvmConstants.KVM_ENABLE_CAP),
        ("KVM_GET_DIRTY_LOG", KvmConstants.KVM_GET_DIRTY_LOG), ("KVM_CLEAR_DIRTY_LOG", KvmConstants.KVM_CLEAR_DIRTY_LOG), ("KVM_RESET_DIRTY_RINGS", KvmConstants.KVM_RESET_DIRTY_RINGS),
    ];

    // Plain constants (capabilities, flags) the state code relies on.
    private static readonly (string Name, ulong Value)[] ValueConstants =
    [
        ("KVM_CAP_ADJUST_CLOCK", KvmConstants.KVM_CAP_ADJUST_CLOCK), ("KVM_CAP_VCPU_EVENTS", KvmConstants.KVM_CAP_VCPU_EVENTS),
        ("KVM_CAP_DEBUGREGS", KvmConstants.KVM_CAP_DEBUGREGS), ("KVM_CAP_XSAVE", KvmConstants.KVM_CAP_XSAVE), ("KVM_CAP_XCRS", KvmConstants.KVM_CAP_XCRS),
        ("KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2", KvmConstants.KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2),
        ("KVM_CAP_DIRTY_LOG_RING", KvmConstants.KVM_CAP_DIRTY_LOG_RING), ("KVM_CAP_DIRTY_LOG_RING_ACQ_REL", KvmConstants.KVM_CAP_DIRTY_LOG_RING_ACQ_REL),
        ("KVM_DIRTY_LOG_PAGE_OFFSET", KvmConstants.KVM_DIRTY_LOG_PAGE_OFFSET), ("KVM_DIRTY_GFN_F_DIRTY", KvmConstants.KVM_DIRTY_GFN_F_DIRTY),
        ("KVM_DIRTY_GFN_F_RESET", KvmConstants.KVM_DIRTY_GFN_F_RESET), ("KVM_EXIT_DIRTY_RING_FULL", KvmConstants.KVM_EXIT_DIRTY_RING_FULL), ("KVM_CAP_XSAVE2", KvmConstants.KVM_CAP_XSAVE2),
        ("KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE", KvmConstants.KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE), ("KVM_DIRTY_LOG_INITIALLY_SET", KvmConstants.KVM_DIRTY_LOG_INITIALLY_SET),
        ("KVM_CLOCK_TSC_STABLE", KvmConstants.KVM_CLOCK_TSC_STABLE), ("KVM_CLOCK_REALTIME", KvmConstants.KVM_CLOCK_REALTIME), ("KVM_CLOCK_HOST_TSC", KvmConstants.KVM_CLOCK_HOST_TSC),
        ("KVM_VCPUEVENT_VALID_NMI_PENDING", KvmConstants.KVM_VCPUEVENT_VALID_NMI_PENDING), ("KVM_VCPUEVENT_VALID_SIPI_VECTOR", KvmConstants.KVM_VCPUEVENT_VALID_SIPI_VECTOR),
        ("KVM_VCPUEVENT_VALID_SHADOW", KvmConstants.KVM_VCPUEVENT_VALID_SHADOW), ("KVM_VCPUEVENT_VALID_SMM", KvmConstants.KVM_VCPUEVENT_VALID_SMM),
        ("KVM_VCPUEVENT_VALID_PAYLOAD", KvmConstants.KVM_VCPUEVENT_VALID_PAYLOAD), ("KVM_VCPUEVENT_VALID_TRIPLE_FAULT", KvmConstants.KVM_VCPUEVENT_VALID_TRIPLE_FAULT),
        ("KVM_MAX_XCRS", KvmConstants.KVM_MAX_XCRS), ("KVM_APIC_REG_SIZE", KvmConstants.KVM_APIC_REG_SIZE), ("KVM_MEM_LOG_DIRTY_PAGES", KvmConstants.KVM_MEM_LOG_DIRTY_PAGES),
        ("KVM_IRQCHIP_PIC_MASTER", KvmConstants.KVM_IRQCHIP_PIC_MASTER), ("KVM_IRQCHIP_PIC_SLAVE", KvmConstants.KVM_IRQCHIP_PIC_SLAVE), ("KVM_IRQCHIP_IOAPIC", KvmConstants.KVM_IRQCHIP_IOAPIC),
    ];

    private static Dictionary<string, ulong>? s_truth;

    private static Dictionary<string, ulong> HeaderTruth()
    {
        if (s_truth is not null) return s_truth;
        var c = new StringBuilder("#include <stdio.h>\n#include <stddef.h>\n#include <signal.h>\n#include <sys/stat.h>\n#include <linux/kvm.h>\nint main(void){\n");
        foreach (var (_, ctype, fields) in Structs)
        {
            if (!ctype.StartsWith("struct kvm_")) continue;
            c.Append($"printf(\"{ctype} %zu\\n\", sizeof({ctype}));\n");
            foreach (var (_, f) in fields) c.Append($"printf(\"{ctype}.{f} %zu\\n\", offsetof({ctype}, {f}));\n");
        }
        c.Append("printf(\"struct kvm_run.size %zu\\n\", sizeof(struct kvm_run));\n");
        foreach (var (_, f) in KvmRunFields) c.Append($"printf(\"struct kvm_run.{f} %zu\\n\", offsetof(struct kvm_run, {f}));\n");
        foreach (var (_, member, fields) in ExitUnionMembers)
        {
            c.Append($"printf(\"kvm_run.{member} %zu\\n\", sizeof(((struct kvm_run*)0)->{member}));\n");
            foreach (var (_, f) in fields)
                c.Append($"printf(\"kvm_run.{member}.{f} %zu\\n\", offsetof(struct kvm_run, {member}.{f}) - offsetof(struct kvm_run, {member}));\n");
        }
        foreach (var (name, _) in Ioctls) c.Append($"printf(\"{name} %lu\\n\", (unsigned long){name});\n");
        foreach (var (name, _) in ValueConstants) c.Append($"printf(\"{name} %lu\\n\", (unsigned long){name});\n");
        c.Append("return 0;}\n");
        var truth = new Dictionary<string, ulong>();
        foreach (string line in NativeCompiler.CompileAndRun(c.ToString(), "kvm_layout").Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            int sp = line.LastIndexOf(' ');
            truth[line[..sp]] = ulong.Parse(line[(sp + 1)..]);
        }
        return s_truth = truth;
    }

    public static TheoryData<string> StructNames()
    {
        var data = new TheoryData<string>();
        foreach (var s in Structs) if (s.CType.StartsWith("struct kvm_")) data.Add(s.CType);
        return data;
    }

    [Theory]
    [MemberData(nameof(StructNames))]
    public void StructSizeAndOffsetsMatchHeader(string ctype)
    {
        var truth = HeaderTruth();
        var (type, _, fields) = Structs.Single(s => s.CType == ctype);
        Assert.Equal(truth[ctype], (ulong)Marshal.SizeOf(type));
        foreach (var (cs, c) in fields)
            Assert.True(truth[$"{ctype}.{c}"] == (ulong)Marshal.OffsetOf(type, cs), $"{ctype}.{c}: header {truth[$"{ctype}.{c}"]}, C# {Marshal.OffsetOf(type, cs)}");
    }

    [Fact]
    public void KvmRunHeaderAndExitUnionMatch()
    {
        var truth = HeaderTruth();
        foreach (var (cs, c) in KvmRunFields)
            Assert.True(truth[$"struct kvm_run.{c}"] == (ulong)Marshal.OffsetOf<kvm_run>(cs), $"kvm_run.{c}");
        foreach (var (type, member, fields) in ExitUnionMembers)
        {
            Assert.True((ulong)Marshal.SizeOf(type) <= truth[$"kvm_run.{member}"] + 7, $"kvm_run.{member} size");
            foreach (var (cs, c) in fields)
                Assert.True(truth[$"kvm_run.{member}.{c}"] == (ulong)Marshal.OffsetOf(type, cs), $"kvm_run.{member}.{c}");
        }
    }

    [Fact]
    public void IoctlNumbersMatchHeader()
    {
        var truth = HeaderTruth();
        foreach (var (name, value) in Ioctls) Assert.True(truth[name] == value, $"{name}: header 0x{truth[name]:x}, C# 0x{value:x}");
    }

    [Fact]
    public void StateConstantsMatchHeader()
    {
        var truth = HeaderTruth();
        foreach (var (name, value) in ValueConstants) Assert.True(truth[name] == value, $"{name}: header {truth[name]}, C# {value}");
    }

    // libc structs (sigaction, stat, epoll_event, ifreq, flock): LibcLayoutTests.
}
