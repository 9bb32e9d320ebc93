using System.Text.Json;
using KvmPS.Contract;
using KvmPS.Devices.Config;
using KvmPS.Interop;
using KvmPS.Vm;

namespace KvmPS.Vmm;

/// <summary>What the control socket reports of the VMM: describe, status and metrics.</summary>
public sealed partial class VmmHost
{
    public DescribeReply Describe()
    {
        var m = _config.Machine;
        var wire = _config.Configuration;
        VirtualMachine? machine;
        lock (_lock) machine = _machine;
        var devices = new List<DeviceDescription>(m.Devices.Count);
        // Configured devices the VM lost (removed live) are not listed; the others keep their slots.
        uint removed = machine?.RemovedConfiguredSlots ?? m.RemovedDeviceSlots;
        for (int i = 0; i < m.Devices.Count; i++)
            if ((removed & (1u << (i + 1))) == 0)
                devices.Add(DescribeDevice(m.Devices[i], i + 1, hotplugged: false, removable: ConfiguredDeviceSlots.WhyNotRemovable(m.Devices, i + 1) is null));
        // Hot-plugged devices follow, in slot order; one the guest ejected is gone from the machine and from here.
        if (machine is not null)
            foreach (var d in machine.HotpluggedDevices.OrderBy(d => d.Slot)) devices.Add(DescribeDevice(d.Config, d.Slot, hotplugged: true, removable: true));
        var requests = ControlRequests.Core.ToList();
        if (machine is not null)
            foreach (var d in machine.ControlDevices)
                requests.AddRange(d.ControlRequests);
        return new DescribeReply
        {
            Vmm = "kvmps-vmm",
            Version = Version,
            Pid = Environment.ProcessId,
            Kernel = m.KernelPath ?? BuiltInGuest.DisplayName,
            Initrd = m.InitrdPath,
            Cmdline = m.Cmdline,
            MemoryBytes = (long)m.MemoryBytes,
            Vcpus = m.VcpuCount,
            MaxVcpus = m.EffectiveMaxVcpus,
            PresentVcpus = machine?.PresentVcpuCount,
            Hugepages = wire.Hugepages ?? HugePageBacking.None,
            Ksm = m.Memory.Ksm,
            NumaNode = m.Memory.NumaNode,
            Devices = devices,
            Serial = wire.Serial,
            ControlSocket = _control?.Path,
            OnReset = wire.OnReset ?? GuestResetAction.Reboot,
            OnCrash = wire.OnCrash ?? GuestCrashAction.Exit,
            NestedPvm = Kvm.IsNestedThroughPvm,
            Requests = [.. requests.Distinct()],
            PassedFilesRequests = ControlRequests.TakingPassedFiles,
        };
    }

    /// <summary>A device as <c>describe</c> lists it: its type, PCI address and the options it is configured with.</summary>
    private static DeviceDescription DescribeDevice(DeviceConfig config, int slot, bool hotplugged, bool removable)
    {
        using var options = JsonDocument.Parse(VirtualMachine.DescribeJson(config));
        return new DeviceDescription
        {
            Type = config.Type,
            Pci = PciAddresses.Format(slot),
            Hotplugged = hotplugged,
            Removable = removable,
            Options = options.RootElement.EnumerateObject().Where(p => p.Name != "type").ToDictionary(p => p.Name, p => p.Value.Clone(), StringComparer.Ordinal),
        };
    }

    public StatusReply Status()
    {
        VirtualMachine? m; VmExit? exit; int boots;
        lock (_lock) { m = _machine; exit = _lastExit; boots = _boots; }
        var state = m?.State ?? (exit?.Kind == VmExitKind.Crashed ? VmState.Crashed : exit is null ? VmState.Created : VmState.Stopped);
        var ended = m?.Exited is { IsCompleted: true } t ? t.Result : null;
        return new StatusReply
        {
            State = state.ToString(),
            Boots = boots,
            UptimeMs = m?.StartedUtc is { } started ? (long)(DateTime.UtcNow - started).TotalMilliseconds : 0,
            NestedPvm = Kvm.IsNestedThroughPvm,
            AcpiPowerButton = m?.Pm is { PowerButtonEnabled: true },
            Vcpus = m is null ? [] : [.. m.Vcpus.Select(v => new VcpuStateReply(v.Id, v.State.ToString()))],
            Exit = ended is null ? null : new ExitReply
            {
                Kind = ended.Kind.ToString(),
                Reason = ended.Reason,
                DebugExitValue = ended.DebugExitValue,
                Registers = ended.Cpu is not { } c ? null : new CrashRegisters
                {
                    Vcpu = c.VcpuId,
                    Rip = Hex(c.Rip), Rsp = Hex(c.Rsp), Rflags = Hex(c.Rflags), Rax = Hex(c.Rax), Rbx = Hex(c.Rbx), Rcx = Hex(c.Rcx),
                    Rdx = Hex(c.Rdx), Rsi = Hex(c.Rsi), Rdi = Hex(c.Rdi), Rbp = Hex(c.Rbp), Cr0 = Hex(c.Cr0), Cr2 = Hex(c.Cr2),
                    Cr3 = Hex(c.Cr3), Cr4 = Hex(c.Cr4), Efer = Hex(c.Efer), Cs = Hex(c.Cs), CsBase = Hex(c.CsBase),
                },
            },
        };
    }

    private static string Hex(ulong value) => $"0x{value:x}";

    private static readonly string[] ExitReasonNames =
    [
        "unknown", "exception", "io", "hypercall", "debug", "hlt", "mmio", "irq_window_open", "shutdown", "fail_entry", "intr",
        "set_tpr", "tpr_access", "s390_sieic", "s390_reset", "dcr", "nmi", "internal_error", "osi", "papr_hcall", "s390_ucontrol",
        "watchdog", "s390_tsch", "epr", "system_event",
    ];

    public MetricsReply Metrics()
    {
        VirtualMachine? m;
        lock (_lock) m = _machine;
        var exits = new Dictionary<string, long>(StringComparer.Ordinal);
        if (m is not null)
            for (uint reason = 0; reason < ExitReasonNames.Length; reason++)
            {
                long total = 0;
                foreach (var v in m.Vcpus) total += v.ExitCount(reason);
                if (total > 0) exits[ExitReasonNames[reason]] = total;
            }
        var (rss, guestRss) = ProcessMemory.ReadRss(m?.Memory);
        return new MetricsReply
        {
            Exits = exits,
            Vcpus = m is null ? [] : [.. m.Vcpus.Select(v => new VcpuMetricsReply(v.Id, v.State.ToString(), v.ExitCount(KvmConstants.KVM_EXIT_IO), v.ExitCount(KvmConstants.KVM_EXIT_MMIO)))],
            RssBytes = rss,
            GuestRssBytes = guestRss,
            VmmRssBytes = Math.Max(0, rss - guestRss),
            ConsoleBytes = Console.BytesWritten,
            PostCodeWrites = m?.PostCode.Writes ?? 0,
            UptimeMs = m?.StartedUtc is { } started ? (long)(DateTime.UtcNow - started).TotalMilliseconds : 0,
            SinceExecMs = _sinceExec.ElapsedMilliseconds,
            NestedPvm = Kvm.IsNestedThroughPvm,
        };
    }
}
