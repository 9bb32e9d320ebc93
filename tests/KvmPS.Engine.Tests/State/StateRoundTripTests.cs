using System.Runtime.InteropServices;
using KvmPS.Engine.Tests.Support;
using KvmPS.Interop;
using KvmPS.State;
using KvmPS.Vm;
using Xunit;
using Xunit.Abstractions;

namespace KvmPS.Engine.Tests.State;

/// <summary>
/// vCPU and VM state records, in-process on the real KVM: a running guest's records restored into a freshly built
/// machine save back to the same bytes. Fields that are clocks (TSC, kvmclock, the LAPIC timer's current count, the
/// PIT's load time) move on with host time between the two saves; they are checked to have moved forward a little,
/// everything else byte for byte.
/// </summary>
public class StateRoundTripTests(ITestOutputHelper log)
{
    private const uint MSR_IA32_TSC = 0x10;
    private const int APIC_TMCCT = 0x390;

    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    public void VcpuAndVmRecordsRoundTripByteForByte(int vcpus)
    {
        var config = new MachineConfig { VcpuCount = vcpus, Cmdline = "kvmps.run=work 1" };
        using var run = new GuestRun(config);
        run.Machine.Start();
        Assert.True(run.WaitForOutput("work: count 3", TimeSpan.FromSeconds(60)), run.Output);
        Assert.True(run.Machine.Pause(TimeSpan.FromSeconds(5)));
        var first = run.Machine.SaveState();
        Assert.Equal(["machine", "kvm/vm", .. Enumerable.Range(0, vcpus).Select(i => $"vcpu/{i}")], first.Select(r => r.Name).Take(2 + vcpus));

        using var copy = new MachineBuilder(config, _ => { }).BuildHardware();
        copy.RestoreState(first);
        var second = copy.SaveState();

        Assert.Equal(first.Select(r => (r.Name, r.Version)), second.Select(r => (r.Name, r.Version)));
        for (int i = 0; i < first.Count; i++)
        {
            var (a, b) = (first[i], second[i]);
            log.WriteLine($"{a.Name}: {a.Data.Length} bytes");
            if (a.Name.StartsWith("vcpu/")) CompareVcpu(a, b);
            else if (a.Name == "kvm/vm") CompareVm(a, b);
            else Assert.True(a.Data.AsSpan().SequenceEqual(b.Data), $"record {a.Name} differs after save → restore → save");
        }
    }

    private static void CompareVcpu(StateRecord a, StateRecord b)
    {
        var x = VcpuState.Read(new StateReader(a.Data, a.Name), a.Version);
        var y = VcpuState.Read(new StateReader(b.Data, b.Name), b.Version);
        ulong tscA = x.Msrs.Single(m => m.index == MSR_IA32_TSC).data, tscB = y.Msrs.Single(m => m.index == MSR_IA32_TSC).data;
        Assert.True(tscB >= tscA, $"{a.Name}: the TSC went back from {tscA} to {tscB}");
        for (int i = 0; i < x.Msrs.Length; i++) if (x.Msrs[i].index == MSR_IA32_TSC) x.Msrs[i].data = y.Msrs[i].data = 0;
        VcpuState.BytesOf(ref x.Lapic).Slice(APIC_TMCCT, 4).Clear();
        VcpuState.BytesOf(ref y.Lapic).Slice(APIC_TMCCT, 4).Clear();
        var wa = new StateWriter(); x.Write(wa);
        var wb = new StateWriter(); y.Write(wb);
        byte[] ba = wa.ToArray(), bb = wb.ToArray();
        int diff = ba.AsSpan().CommonPrefixLength(bb);
        Assert.True(diff == ba.Length && ba.Length == bb.Length, $"{a.Name} differs at byte {diff} (of {ba.Length}) after save → restore → save");
    }

    private static void CompareVm(StateRecord a, StateRecord b)
    {
        Assert.Equal(a.Data.Length, b.Data.Length);
        byte[] x = (byte[])a.Data.Clone(), y = (byte[])b.Data.Clone();
        int pit = 3 * Marshal.SizeOf<kvm_irqchip>();
        int loadTime = (int)Marshal.OffsetOf<kvm_pit_channel_state>("count_load_time");
        int channel = Marshal.SizeOf<kvm_pit_channel_state>();
        for (int c = 0; c < 3; c++) { x.AsSpan(pit + c * channel + loadTime, 8).Clear(); y.AsSpan(pit + c * channel + loadTime, 8).Clear(); }
        ulong clockA = BitConverter.ToUInt64(x, x.Length - 8), clockB = BitConverter.ToUInt64(y, y.Length - 8);
        Assert.True(clockB >= clockA && clockB - clockA < 10_000_000_000UL, $"kvmclock moved from {clockA} to {clockB}");
        x.AsSpan(x.Length - 8).Clear(); y.AsSpan(y.Length - 8).Clear();
        int diff = x.AsSpan().CommonPrefixLength(y);
        Assert.True(diff == x.Length, $"kvm/vm differs at byte {diff} after save → restore → save");
    }

    [Fact]
    public void RecordsOfAnotherShapeAreRefusedNamingTheRecord()
    {
        using var one = new MachineBuilder(new MachineConfig { VcpuCount = 1 }, _ => { }).BuildHardware();
        var records = one.SaveState();
        using var two = new MachineBuilder(new MachineConfig { VcpuCount = 2 }, _ => { }).BuildHardware();
        var e = Assert.Throws<StateFormatException>(() => two.RestoreState(records));
        Assert.Equal("machine", e.RecordName);
        Assert.Contains("1 vCPUs", e.Message);

        var truncated = records.Select(r => r.Name == "vcpu/0" ? r with { Data = r.Data[..100] } : r).ToList();
        using var three = new MachineBuilder(new MachineConfig { VcpuCount = 1 }, _ => { }).BuildHardware();
        var t = Assert.Throws<StateFormatException>(() => three.RestoreState(truncated));
        Assert.Equal("vcpu/0", t.RecordName);

        var unknown = records.Append(new StateRecord("mystery/0", 1, [])).ToList();
        using var four = new MachineBuilder(new MachineConfig { VcpuCount = 1 }, _ => { }).BuildHardware();
        Assert.Equal("mystery/0", Assert.Throws<StateFormatException>(() => four.RestoreState(unknown)).RecordName);
    }
}
