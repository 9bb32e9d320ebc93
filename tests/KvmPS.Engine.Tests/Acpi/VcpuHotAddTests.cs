using KvmPS.Acpi;
using KvmPS.Engine.Tests.Support;
using KvmPS.Interop;
using KvmPS.Vm;
using KvmPS.Engine.Tests.Vm;
using static KvmPS.Acpi.CpuHotplugController;

namespace KvmPS.Engine.Tests.Acpi;

/// <summary>
/// vCPU hot-add and removal in the engine (<see cref="VirtualMachine.SetVcpuCount"/>) on a running built-in guest:
/// KVM vCPUs created after the VM has run, set up like boot vCPUs, marked in the hot-plug controller with the GPE
/// raised; limits refused with the VM unchanged; a vCPU the guest ejected is reused when added again.
/// </summary>
[Collection(ProcessWideResourceCollection.Name)]
public class VcpuHotAddTests
{
    private const uint MSR_IA32_TSC = 0x10;

    private static ulong Tsc(Vcpu vcpu)
    {
        Span<kvm_msr_entry> tsc = [new() { index = MSR_IA32_TSC }];
        Kvm.GetMsrs(vcpu.Handle, tsc);
        return tsc[0].data;
    }

    private static void Eject(VirtualMachine machine, int cpu)
    {
        machine.PortBus.Write((ushort)(MemoryLayout.CpuHotplugPort + SelectOffset), BitConverter.GetBytes((uint)cpu));
        machine.PortBus.Write((ushort)(MemoryLayout.CpuHotplugPort + CommandOffset), [CMD_EJECT]);
    }

    [Fact]
    public void VcpusAreAddedToARunningVmWithTheEventAndRemovedThroughTheGuestsEject()
    {
        using var machine = VirtualMachine.Create(new MachineConfig { MemoryBytes = 32UL << 20, VcpuCount = 1, MaxVcpus = 4 }, _ => { });
        machine.Start();
        Thread.Sleep(300); // the boot vCPU runs for a while before the hot-add

        machine.SetVcpuCount(3);
        Assert.Equal([0, 1, 2], machine.Vcpus.Select(v => v.Id));
        Assert.Equal(3, machine.PresentVcpuCount);
        Assert.Equal(STATUS_PRESENT | STATUS_INSERTING, machine.CpuHotplug.StatusOf(1));
        Assert.Equal(STATUS_PRESENT | STATUS_INSERTING, machine.CpuHotplug.StatusOf(2));
        Assert.Equal(0, machine.CpuHotplug.StatusOf(3));
        Assert.Equal(1 << CpuHotplugAcpi.Gpe, machine.Pm.Gpe0.Status);

        // The new vCPUs' threads run (waiting in KVM for INIT/SIPI) and stop with the others on pause.
        Assert.True(machine.Pause(TimeSpan.FromSeconds(10)), "a hot-added vCPU did not park");
        Assert.All(machine.Vcpus, v => Assert.Equal(VcpuRunState.Paused, v.State));
        // KVM synchronized the new vCPU's TSC with the running one; the boot value 0 would put it behind.
        ulong tsc0 = Tsc(machine.Vcpus[0]), tsc2 = Tsc(machine.Vcpus[2]);
        Assert.True(tsc2 > tsc0 / 2, $"vCPU 2's TSC {tsc2} is far behind vCPU 0's {tsc0}");
        // A snapshot could not be restored into the configured (1-vCPU) machine: refused before anything is written.
        Assert.Contains("vCPUs changed since boot", Assert.Throws<InvalidOperationException>(() => machine.SaveState()).Message);
        machine.Resume();

        // Beyond the maximum, or below one: refused naming the limit, nothing changes.
        var tooMany = Assert.Throws<ArgumentOutOfRangeException>(() => machine.SetVcpuCount(5));
        Assert.Contains("maximum 4", tooMany.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => machine.SetVcpuCount(0));
        Assert.Equal(3, machine.Vcpus.Count);
        Assert.Equal(3, machine.PresentVcpuCount);

        // Down to one: removal events for 1 and 2; present until the guest ejects each.
        machine.SetVcpuCount(1);
        Assert.True((machine.CpuHotplug.StatusOf(2) & STATUS_REMOVING) != 0);
        Assert.True((machine.CpuHotplug.StatusOf(1) & STATUS_REMOVING) != 0);
        Assert.Equal(3, machine.PresentVcpuCount);
        Eject(machine, 2);
        Assert.Equal(STATUS_EJECTED, machine.CpuHotplug.StatusOf(2));
        Assert.Equal(2, machine.PresentVcpuCount);

        // Added again: the parked KVM vCPU is reused, not created twice.
        machine.SetVcpuCount(3);
        Assert.Equal(3, machine.Vcpus.Count);
        Assert.Equal(STATUS_PRESENT | STATUS_INSERTING, machine.CpuHotplug.StatusOf(2));

        machine.Stop();
        Assert.Throws<InvalidOperationException>(() => machine.SetVcpuCount(2));
    }
}
