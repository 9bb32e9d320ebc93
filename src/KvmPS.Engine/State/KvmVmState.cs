using KvmPS.Interop;
using static KvmPS.Interop.KvmConstants;

namespace KvmPS.State;

/// <summary>
/// The VM-wide state KVM emulates in the kernel: both 8259 PICs, the IOAPIC, the 8254 PIT and the KVM clock
/// (kvmclock's time base). One record, "kvm/vm".
/// </summary>
public sealed class KvmVmState(KvmVmHandle vm) : IPersistent
{
    private static readonly uint[] Chips = [KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQCHIP_IOAPIC];

    public string StateName => "kvm/vm";
    public ushort StateVersion => 1;

    public void SaveState(StateWriter writer)
    {
        foreach (uint id in Chips)
        {
            var chip = Kvm.GetIrqchip(vm, id);
            writer.WriteFixed(VcpuState.BytesOf(ref chip));
        }
        var pit = Kvm.GetPit2(vm);
        writer.WriteFixed(VcpuState.BytesOf(ref pit));
        // Only the clock value: realtime and host_tsc describe this host at this instant and mean nothing on restore.
        var clock = Kvm.GetClock(vm);
        writer.WriteUInt64(clock.clock);
    }

    public void RestoreState(StateReader reader, ushort version)
    {
        if (version != StateVersion) throw reader.Fail($"version {version} is not known to this build (it reads version {StateVersion})");
        var chips = new kvm_irqchip[Chips.Length];
        for (int i = 0; i < Chips.Length; i++)
        {
            reader.ReadFixed(VcpuState.BytesOf(ref chips[i]));
            if (chips[i].chip_id != Chips[i]) throw reader.Fail($"irqchip {i} has chip_id {chips[i].chip_id}, expected {Chips[i]}");
        }
        kvm_pit_state2 pit = default;
        reader.ReadFixed(VcpuState.BytesOf(ref pit));
        ulong clock = reader.ReadUInt64();
        reader.EnsureEnd();
        try
        {
            foreach (var chip in chips) Kvm.SetIrqchip(vm, chip);
            Kvm.SetPit2(vm, pit); // KVM reloads each channel's count from now (count_load_time is not taken as given)
            Kvm.SetClock(vm, new kvm_clock_data { clock = clock });
        }
        catch (NativeCallException e) { throw reader.Fail($"KVM refused it: {e.Message}"); }
    }
}
