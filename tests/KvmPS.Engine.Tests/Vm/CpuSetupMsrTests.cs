using KvmPS.Engine.Tests.Support;
using KvmPS.Interop;
using KvmPS.Vm;

namespace KvmPS.Engine.Tests.Vm;

/// <summary>MSRs the engine sets up the way real firmware leaves them, so Linux finds nothing to report.</summary>
[Collection(ProcessWideResourceCollection.Name)]
public class CpuSetupMsrTests
{
    private const uint MSR_K7_HWCR = 0xc001_0015;

    private static kvm_cpuid_entry2 Leaf(uint function, uint ebx = 0, uint ecx = 0, uint edx = 0) =>
        new() { function = function, ebx = ebx, ecx = ecx, edx = edx };

    private static readonly kvm_cpuid_entry2 AmdVendor = Leaf(0, ebx: 0x6874_7541, edx: 0x6974_6e65, ecx: 0x444d_4163);
    private static readonly kvm_cpuid_entry2 IntelVendor = Leaf(0, ebx: 0x756e_6547, edx: 0x4965_6e69, ecx: 0x6c65_746e);
    private static readonly kvm_cpuid_entry2 InvariantTsc = Leaf(0x8000_0007, edx: 1u << 8);

    [Fact]
    public void TscFreqSelIsWantedOnlyOnAmdWithAnInvariantTsc()
    {
        Assert.True(CpuSetup.TscCountsAtP0Frequency([AmdVendor, InvariantTsc]));
        Assert.False(CpuSetup.TscCountsAtP0Frequency([AmdVendor, Leaf(0x8000_0007)]));
        Assert.False(CpuSetup.TscCountsAtP0Frequency([AmdVendor]));
        Assert.False(CpuSetup.TscCountsAtP0Frequency([IntelVendor, InvariantTsc]));
    }

    /// <summary>Linux: "[Firmware Bug]: TSC doesn't count with P0 frequency!" when HWCR bit 24 is clear on such a CPU.</summary>
    [Fact]
    public void EveryVcpuHasHwcrTscFreqSelWhereTheHostCpuWantsIt()
    {
        using var system = Kvm.OpenSystem("/dev/kvm");
        bool wanted = CpuSetup.TscCountsAtP0Frequency(Kvm.GetSupportedCpuid(system));
        using var machine = VirtualMachine.Create(new MachineConfig { MemoryBytes = 32UL << 20, VcpuCount = 2 }, _ => { });
        foreach (var vcpu in machine.Vcpus)
        {
            Span<kvm_msr_entry> hwcr = [new() { index = MSR_K7_HWCR }];
            Kvm.GetMsrs(vcpu.Handle, hwcr);
            Assert.Equal(wanted, (hwcr[0].data & (1UL << 24)) != 0);
        }
    }
}
