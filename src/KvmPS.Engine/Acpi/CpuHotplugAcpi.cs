using KvmPS.Vm;
using static KvmPS.Acpi.Aml;

namespace KvmPS.Acpi;

/// <summary>
/// The DSDT's CPU description (docs/acpi.md): a processor container <c>\_SB.CPUS</c> (ACPI0010) with one processor
/// device (ACPI0007, <c>C000</c>..) per possible vCPU, each with <c>_UID</c> = its MADT processor UID, <c>_STA</c> read
/// from the <see cref="CpuHotplugController"/>, <c>_MAT</c> (its MADT Local APIC entry, enabled) and, except the boot
/// CPU, <c>_EJ0</c>; the scan method <c>CSCN</c> that <c>\_GPE._E02</c> runs; and a motherboard-resource device that
/// reserves the controller's ports. The scan is straight-line code, one block per CPU, with no AML loop.
/// </summary>
public static class CpuHotplugAcpi
{
    /// <summary>The GPE0 bit the controller raises.</summary>
    public const int Gpe = 2;
    /// <summary>xAPIC IDs 0-253 for CPUs (the IOAPIC takes the next ID, 255 is broadcast).</summary>
    public const int MaxProcessors = 254;
    private const int NotifyDeviceCheck = 1, NotifyEjectRequest = 3;

    /// <summary>The processor object's name for CPU <paramref name="cpu"/>: C000..C0FD.</summary>
    public static string ProcessorName(int cpu) => $"C{cpu:X3}";

    /// <summary>The processor object's full path, e.g. \_SB.CPUS.C001.</summary>
    public static string ProcessorPath(int cpu) => $"\\_SB.CPUS.{ProcessorName(cpu)}";

    /// <summary>
    /// <c>Scope(\_SB) { Device(CPUS) {...} Device(CPHP) {...} }</c> for <paramref name="maxVcpus"/> possible CPUs, and
    /// <c>Scope(\_GPE) { Method(_E02) { \_SB.CPUS.CSCN() } }</c>.
    /// </summary>
    public static byte[] BuildDsdtAml(int maxVcpus)
    {
        if (maxVcpus is < 1 or > MaxProcessors) throw new ArgumentOutOfRangeException(nameof(maxVcpus), $"{maxVcpus} possible CPUs is outside 1-{MaxProcessors}.");
        var bit = (ulong b) => Integer(b);
        var cpus = new List<byte[]>
        {
            Name("_HID", String("ACPI0010")),
            Name("_CID", EisaId("PNP0A05")),
            Mutex("CPLK"),
            OperationRegion("CPHR", RegionSpace.SystemIO, MemoryLayout.CpuHotplugPort, CpuHotplugController.Length),
            // One I/O access per register: SELECT as a dword, STATUS and COMMAND as bytes (written whole, no read first).
            Field("CPHR", FieldAccess.DWord, FieldUpdate.Preserve, new FieldUnit("CSEL", 32)),
            Field("CPHR", FieldAccess.Byte, FieldUpdate.WriteAsZeros,
                new FieldUnit(null, 8 * CpuHotplugController.StatusOffset), new FieldUnit("CSTS", 8), new FieldUnit("CCMD", 8)),
            // CSTA(cpu): _STA of a processor: present, enabled, shown and functioning, or absent.
            Method("CSTA", 1, serialized: false,
                Acquire("CPLK"),
                Store(Arg(0), Ref("CSEL")),
                Store(Integer(0), Local(0)),
                If(And(Ref("CSTS"), bit(CpuHotplugController.STATUS_PRESENT)), Store(Integer(0x0F), Local(0))),
                Release("CPLK"),
                Return(Local(0))),
            // CEJ0(cpu): _EJ0 of a processor: the guest has released it.
            Method("CEJ0", 1, serialized: false,
                Acquire("CPLK"),
                Store(Arg(0), Ref("CSEL")),
                Store(bit(CpuHotplugController.CMD_EJECT), Ref("CCMD")),
                Release("CPLK")),
            BuildScan(maxVcpus),
        };
        for (int cpu = 0; cpu < maxVcpus; cpu++) cpus.Add(Processor(cpu));
        var reservation = Device("CPHP",
            Name("_HID", EisaId("PNP0C02")),
            Name("_UID", Integer(2)),
            Name("_CRS", ResourceTemplate(IoPort(MemoryLayout.CpuHotplugPort, CpuHotplugController.Length))));
        return
        [
            .. Scope("\\_SB", Device("CPUS", cpus.ToArray()), reservation),
            .. Scope("\\_GPE", Method($"_E{Gpe:X2}", 0, serialized: false, Call("\\_SB.CPUS.CSCN"))),
        ];
    }

    /// <summary>
    /// CSCN: for each CPU but the boot CPU (which never changes), select it, read its status once, and for a pending
    /// insert notify Device Check, for a pending removal notify Eject Request, acknowledging each event.
    /// </summary>
    private static byte[] BuildScan(int maxVcpus)
    {
        var body = new List<byte[]> { Acquire("CPLK") };
        for (int cpu = 1; cpu < maxVcpus; cpu++)
        {
            string name = ProcessorName(cpu);
            body.Add(Store(Integer((ulong)cpu), Ref("CSEL")));
            body.Add(Store(Ref("CSTS"), Local(0)));
            body.Add(If(And(Local(0), Integer(CpuHotplugController.STATUS_INSERTING)),
                Notify(name, Integer(NotifyDeviceCheck)),
                Store(Integer(CpuHotplugController.CMD_ACK_INSERT), Ref("CCMD"))));
            body.Add(If(And(Local(0), Integer(CpuHotplugController.STATUS_REMOVING)),
                Notify(name, Integer(NotifyEjectRequest)),
                Store(Integer(CpuHotplugController.CMD_ACK_REMOVE), Ref("CCMD"))));
        }
        body.Add(Release("CPLK"));
        return Method("CSCN", 0, serialized: false, body.ToArray());
    }

    private static byte[] Processor(int cpu)
    {
        var terms = new List<byte[]>
        {
            Name("_HID", String("ACPI0007")),
            Name("_UID", Integer((ulong)cpu)),
            Method("_STA", 0, serialized: false, Return(Call("CSTA", Integer((ulong)cpu)))),
            // The MADT Local APIC entry (type 0, 8 bytes: UID, APIC ID, flags Enabled), as the OS sees it once present.
            Name("_MAT", Buffer([0x00, 0x08, (byte)cpu, (byte)cpu, 0x01, 0x00, 0x00, 0x00])),
        };
        if (cpu != 0) terms.Add(Method("_EJ0", 1, serialized: false, Call("CEJ0", Integer((ulong)cpu))));
        return Device(ProcessorName(cpu), terms.ToArray());
    }
}
