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
/// raised, waiting for INIT/SIPI; limits refused with the VM unchanged; a vCPU the guest ejected parks outside KVM and is
/// reused when added again.
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
        using var machine = VirtualMachine.Create(new MachineConfig { MemoryBytes = 32UL << 20, VcpuCount = 1, MaxVcpus = 4, Cmdline = "kvmps.nosci" }, _ => { });
        machine.Start();
        Thread.Sleep(300); // the boot vCPU runs for a while before the hot-add; the guest (kvmps.nosci) takes no event, the test does

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
        // A hot-added vCPU waits for the guest's INIT/SIPI, as KVM leaves an AP it creates (this test's guest sends none).
        Assert.Equal(KvmConstants.KVM_MP_STATE_UNINITIALIZED, Kvm.GetMpState(machine.Vcpus[2].Handle));
        // The state has every vCPU and the controller's record.
        var records = machine.SaveState().Select(r => r.Name).ToList();
        Assert.Contains("vcpu/2", records);
        Assert.Contains("cpu-hotplug", records);
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
        Assert.Equal([1, 2], machine.PendingVcpuChanges.Removing);
        // The guest acknowledges the removal of 1 (REMOVING clears) but has not ejected it: still pending.
        machine.PortBus.Write((ushort)(MemoryLayout.CpuHotplugPort + SelectOffset), BitConverter.GetBytes(1u));
        machine.PortBus.Write((ushort)(MemoryLayout.CpuHotplugPort + CommandOffset), [CMD_ACK_REMOVE]);
        Assert.Equal(0, machine.CpuHotplug.StatusOf(1) & STATUS_REMOVING);
        Assert.Equal([1, 2], machine.PendingVcpuChanges.Removing);
        Eject(machine, 2);
        Assert.Equal(STATUS_EJECTED, machine.CpuHotplug.StatusOf(2));
        Assert.Equal(2, machine.PresentVcpuCount);
        // The ejected vCPU's thread leaves KVM and parks, its CPU uninitialized; it counts as parked for a pause.
        Assert.True(SpinWait.SpinUntil(() => machine.Vcpus[2].State == VcpuRunState.Ejected, TimeSpan.FromSeconds(10)), $"vCPU 2 is {machine.Vcpus[2].State}");
        Assert.Equal(KvmConstants.KVM_MP_STATE_UNINITIALIZED, Kvm.GetMpState(machine.Vcpus[2].Handle));
        Assert.True(machine.Pause(TimeSpan.FromSeconds(10)), "a pause waited for the ejected vCPU");
        Assert.Equal(VcpuRunState.Ejected, machine.Vcpus[2].State);
        machine.Resume();

        // Added again: the parked KVM vCPU is reused, not created twice.
        machine.SetVcpuCount(3);
        Assert.Equal(3, machine.Vcpus.Count);
        Assert.Equal(STATUS_PRESENT | STATUS_INSERTING, machine.CpuHotplug.StatusOf(2));
        Assert.True(SpinWait.SpinUntil(() => machine.Vcpus[2].State == VcpuRunState.Running, TimeSpan.FromSeconds(10)), $"vCPU 2 is {machine.Vcpus[2].State}");

        machine.Stop();
        Assert.True(machine.JoinVcpus(TimeSpan.FromSeconds(10)), "a vCPU thread did not end on stop");
        Assert.Throws<InvalidOperationException>(() => machine.SetVcpuCount(2));
    }
}
