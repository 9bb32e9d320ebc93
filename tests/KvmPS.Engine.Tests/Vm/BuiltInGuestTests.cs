using KvmPS.Engine.Tests.Support;
using KvmPS.Vm;
using Xunit.Abstractions;

namespace KvmPS.Engine.Tests.Vm;

/// <summary>The built-in guest on the real engine, in-process: UART, SMP bring-up, firmware tables, debug exit, input.</summary>
public class BuiltInGuestTests(ITestOutputHelper log)
{
    [Theory]
    [InlineData(1, 256)]
    [InlineData(4, 512)]
    public void ReportsCpuCountAndMemoryFromTables(int vcpus, int memoryMiB)
    {
        using var run = new GuestRun(new MachineConfig { VcpuCount = vcpus, MaxVcpus = 8, MemoryBytes = (ulong)memoryMiB << 20, Cmdline = "kvmps.run=exit 7" });
        var exit = run.RunToExit(TimeSpan.FromSeconds(60));
        log.WriteLine(run.Output);
        Assert.Equal(VmExitKind.DebugExit, exit.Kind);
        Assert.Equal(7, exit.DebugExitValue);
        Assert.Contains("KvmPS built-in guest v1", run.Output);
        Assert.Contains($"cpus: acpi={vcpus} mp={vcpus} online={vcpus} max=8", run.Output);
        Assert.Contains($"memory: {memoryMiB} MiB", run.Output);
    }
}
