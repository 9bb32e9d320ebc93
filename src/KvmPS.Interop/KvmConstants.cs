namespace KvmPS.Interop;

/// <summary>KVM ioctl numbers and constants under their C names (checked against the headers by KvmLayoutTests).</summary>
public static unsafe class KvmConstants
{
    private const uint KVMIO = 0xAE;
    private const uint IOC_WRITE = 1, IOC_READ = 2;

    private static nuint IO(uint nr) => (KVMIO << 8) | nr;
    private static nuint IOR(uint nr, int size) => (IOC_READ << 30) | ((uint)size << 16) | (KVMIO << 8) | nr;
    private static nuint IOW(uint nr, int size) => (IOC_WRITE << 30) | ((uint)size << 16) | (KVMIO << 8) | nr;
    private static nuint IOWR(uint nr, int size) => ((IOC_READ | IOC_WRITE) << 30) | ((uint)size << 16) | (KVMIO << 8) | nr;

    public const int KVM_API_VERSION = 12;

    // system ioctls
    public static readonly nuint KVM_GET_API_VERSION = IO(0x00);
    public static readonly nuint KVM_CREATE_VM = IO(0x01);
    public static readonly nuint KVM_GET_MSR_INDEX_LIST = IOWR(0x02, 4);
    public static readonly nuint KVM_CHECK_EXTENSION = IO(0x03);
    public static readonly nuint KVM_GET_VCPU_MMAP_SIZE = IO(0x04);
    public static readonly nuint KVM_GET_SUPPORTED_CPUID = IOWR(0x05, sizeof(kvm_cpuid2));

    // VM ioctls
    public static readonly nuint KVM_CREATE_VCPU = IO(0x41);
    public static readonly nuint KVM_GET_DIRTY_LOG = IOW(0x42, sizeof(kvm_dirty_log));
    public static readonly nuint KVM_SET_USER_MEMORY_REGION = IOW(0x46, sizeof(kvm_userspace_memory_region));
    public static readonly nuint KVM_SET_TSS_ADDR = IO(0x47);
    public static readonly nuint KVM_SET_IDENTITY_MAP_ADDR = IOW(0x48, 8);
    public static readonly nuint KVM_CREATE_IRQCHIP = IO(0x60);
    public static readonly nuint KVM_IRQ_LINE = IOW(0x61, sizeof(kvm_irq_level));
    public static readonly nuint KVM_GET_IRQCHIP = IOWR(0x62, sizeof(kvm_irqchip));
    public static readonly nuint KVM_SET_IRQCHIP = IOR(0x63, sizeof(kvm_irqchip)); // _IOR in the header (a historical mistake kept for ABI)
    public static readonly nuint KVM_SET_GSI_ROUTING = IOW(0x6a, sizeof(kvm_irq_routing));
    public static readonly nuint KVM_IRQFD = IOW(0x76, sizeof(kvm_irqfd));
    public static readonly nuint KVM_CREATE_PIT2 = IOW(0x77, sizeof(kvm_pit_config));
    public static readonly nuint KVM_IOEVENTFD = IOW(0x79, sizeof(kvm_ioeventfd));
    public static readonly nuint KVM_SET_CLOCK = IOW(0x7b, sizeof(kvm_clock_data));
    public static readonly nuint KVM_GET_CLOCK = IOR(0x7c, sizeof(kvm_clock_data));
    public static readonly nuint KVM_GET_PIT2 = IOR(0x9f, sizeof(kvm_pit_state2));
    public static readonly nuint KVM_SET_PIT2 = IOW(0xa0, sizeof(kvm_pit_state2));
    public static readonly nuint KVM_ENABLE_CAP = IOW(0xa3, sizeof(kvm_enable_cap));
    public static readonly nuint KVM_CLEAR_DIRTY_LOG = IOWR(0xc0, sizeof(kvm_clear_dirty_log));
    public static readonly nuint KVM_RESET_DIRTY_RINGS = IO(0xc7);

    // vCPU ioctls
    public static readonly nuint KVM_RUN = IO(0x80);
    public static readonly nuint KVM_GET_REGS = IOR(0x81, sizeof(kvm_regs));
    public static readonly nuint KVM_SET_REGS = IOW(0x82, sizeof(kvm_regs));
    public static readonly nuint KVM_GET_SREGS = IOR(0x83, sizeof(kvm_sregs));
    public static readonly nuint KVM_SET_SREGS = IOW(0x84, sizeof(kvm_sregs));
    public static readonly nuint KVM_GET_MSRS = IOWR(0x88, sizeof(kvm_msrs));
    public static readonly nuint KVM_SET_MSRS = IOW(0x89, sizeof(kvm_msrs));
    public static readonly nuint KVM_GET_FPU = IOR(0x8c, sizeof(kvm_fpu));
    public static readonly nuint KVM_SET_FPU = IOW(0x8d, sizeof(kvm_fpu));
    public static readonly nuint KVM_GET_LAPIC = IOR(0x8e, sizeof(kvm_lapic_state));
    public static readonly nuint KVM_SET_LAPIC = IOW(0x8f, sizeof(kvm_lapic_state));
    public static readonly nuint KVM_SET_CPUID2 = IOW(0x90, sizeof(kvm_cpuid2));
    public static readonly nuint KVM_GET_MP_STATE = IOR(0x98, sizeof(kvm_mp_state));
    public static readonly nuint KVM_SET_MP_STATE = IOW(0x99, sizeof(kvm_mp_state));
    public static readonly nuint KVM_GET_VCPU_EVENTS = IOR(0x9f, sizeof(kvm_vcpu_events));
    public static readonly nuint KVM_SET_VCPU_EVENTS = IOW(0xa0, sizeof(kvm_vcpu_events));
    public static readonly nuint KVM_GET_DEBUGREGS = IOR(0xa1, sizeof(kvm_debugregs));
    public static readonly nuint KVM_SET_DEBUGREGS = IOW(0xa2, sizeof(kvm_debugregs));
    public static readonly nuint KVM_GET_XSAVE = IOR(0xa4, sizeof(kvm_xsave));
    public static readonly nuint KVM_SET_XSAVE = IOW(0xa5, sizeof(kvm_xsave));
    public static readonly nuint KVM_GET_XCRS = IOR(0xa6, sizeof(kvm_xcrs));
    public static readonly nuint KVM_SET_XCRS = IOW(0xa7, sizeof(kvm_xcrs));
    public static readonly nuint KVM_GET_XSAVE2 = IOR(0xcf, sizeof(kvm_xsave));

    // capabilities
    public const int KVM_CAP_IRQCHIP = 0, KVM_CAP_HLT = 1, KVM_CAP_USER_MEMORY = 3, KVM_CAP_SET_TSS_ADDR = 4;
    public const int KVM_CAP_EXT_CPUID = 7, KVM_CAP_NR_VCPUS = 9, KVM_CAP_NR_MEMSLOTS = 10, KVM_CAP_PIT2 = 33;
    public const int KVM_CAP_IRQ_ROUTING = 25, KVM_CAP_IRQFD = 32, KVM_CAP_IOEVENTFD = 36, KVM_CAP_MAX_VCPUS = 66;
    public const int KVM_CAP_IMMEDIATE_EXIT = 136;
    public const int KVM_CAP_ADJUST_CLOCK = 39, KVM_CAP_VCPU_EVENTS = 41, KVM_CAP_DEBUGREGS = 50, KVM_CAP_XSAVE = 55, KVM_CAP_XCRS = 56;
    public const int KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 = 168, KVM_CAP_XSAVE2 = 208;
    public const int KVM_CAP_DIRTY_LOG_RING = 192, KVM_CAP_DIRTY_LOG_RING_ACQ_REL = 223;
    /// <summary>Where a vCPU's dirty ring starts in the vCPU fd's mmap space, in pages.</summary>
    public const int KVM_DIRTY_LOG_PAGE_OFFSET = 64;
    public const uint KVM_DIRTY_GFN_F_DIRTY = 1, KVM_DIRTY_GFN_F_RESET = 2;

    public const uint KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE = 1, KVM_DIRTY_LOG_INITIALLY_SET = 2;
    public const uint KVM_CLOCK_TSC_STABLE = 2, KVM_CLOCK_REALTIME = 1 << 2, KVM_CLOCK_HOST_TSC = 1 << 3;
    public const uint KVM_VCPUEVENT_VALID_NMI_PENDING = 1, KVM_VCPUEVENT_VALID_SIPI_VECTOR = 2, KVM_VCPUEVENT_VALID_SHADOW = 4;
    public const uint KVM_VCPUEVENT_VALID_SMM = 8, KVM_VCPUEVENT_VALID_PAYLOAD = 0x10, KVM_VCPUEVENT_VALID_TRIPLE_FAULT = 0x20;
    public const int KVM_MAX_XCRS = 16, KVM_XSAVE_LEGACY_SIZE = 4096, KVM_APIC_REG_SIZE = 0x400;

    // exit reasons
    public const uint KVM_EXIT_UNKNOWN = 0, KVM_EXIT_EXCEPTION = 1, KVM_EXIT_IO = 2, KVM_EXIT_HYPERCALL = 3;
    public const uint KVM_EXIT_DEBUG = 4, KVM_EXIT_HLT = 5, KVM_EXIT_MMIO = 6, KVM_EXIT_IRQ_WINDOW_OPEN = 7;
    public const uint KVM_EXIT_SHUTDOWN = 8, KVM_EXIT_FAIL_ENTRY = 9, KVM_EXIT_INTR = 10;
    public const uint KVM_EXIT_INTERNAL_ERROR = 17, KVM_EXIT_SYSTEM_EVENT = 24, KVM_EXIT_DIRTY_RING_FULL = 31;
    public const int KVM_EXIT_IO_IN = 0, KVM_EXIT_IO_OUT = 1;

    public const uint KVM_SYSTEM_EVENT_SHUTDOWN = 1, KVM_SYSTEM_EVENT_RESET = 2, KVM_SYSTEM_EVENT_CRASH = 3;

    public const uint KVM_INTERNAL_ERROR_EMULATION = 1, KVM_INTERNAL_ERROR_SIMUL_EX = 2, KVM_INTERNAL_ERROR_DELIVERY_EV = 3;

    public const uint KVM_MP_STATE_RUNNABLE = 0, KVM_MP_STATE_UNINITIALIZED = 1, KVM_MP_STATE_INIT_RECEIVED = 2, KVM_MP_STATE_HALTED = 3;

    public const uint KVM_PIT_SPEAKER_DUMMY = 1;
    public const uint KVM_IRQ_ROUTING_IRQCHIP = 1, KVM_IRQ_ROUTING_MSI = 2;
    public const uint KVM_IRQCHIP_PIC_MASTER = 0, KVM_IRQCHIP_PIC_SLAVE = 1, KVM_IRQCHIP_IOAPIC = 2;
    public const uint KVM_IRQFD_FLAG_DEASSIGN = 1, KVM_IRQFD_FLAG_RESAMPLE = 2;
    public const uint KVM_IOEVENTFD_FLAG_DATAMATCH = 1, KVM_IOEVENTFD_FLAG_PIO = 2, KVM_IOEVENTFD_FLAG_DEASSIGN = 4;
    public const uint KVM_MEM_LOG_DIRTY_PAGES = 1, KVM_MEM_READONLY = 2;

    public const uint KVM_CPUID_FLAG_SIGNIFCANT_INDEX = 1;
    public const int KVM_MAX_CPUID_ENTRIES = 256;
}
