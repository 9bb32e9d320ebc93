using KvmPS.Acpi;

namespace KvmPS.Engine.Tests.Acpi;

/// <summary>
/// ACPICA's <c>acpiexec</c> loads the DSDT <c>--acpi-tables-out</c> writes and runs the CPU hot-plug AML: the scan
/// method (as <c>\_GPE._E02</c>, the way the OS runs it on the event) and every processor's <c>_STA</c>, <c>_MAT</c>
/// and <c>_EJ0</c>, for 1, 4 and 64 maximum vCPUs. acpiexec backs the I/O region with memory filled with one value
/// (<c>-fv</c>): 0 is a controller that reports no CPU, 3 one that reports every CPU present with an insert
/// event, 5 present with a removal event; _STA and the scan's notifications must follow.
/// (Only the DSDT is loaded: acpiexec supplies its own FADT, whose GPE and PM2 layout its built-in self-tests assume.)
/// </summary>
public sealed class CpuHotplugAcpiexecTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    [InlineData(64)]
    public void TheScanAndEveryProcessorsMethodsRunAndFollowTheController(int maxVcpus)
    {
        string dir = Acpica.DumpTables(1, maxVcpus);
        try
        {
            var paths = Enumerable.Range(0, maxVcpus).Select(CpuHotplugAcpi.ProcessorPath).ToArray();
            var perCpu = paths.SelectMany(p => new[] { $"evaluate {p}._STA", $"evaluate {p}._MAT" }).ToList();

            // No CPU reported present: every _STA is 0 and the scan notifies nothing.
            string absent = Acpica.Execute(dir, 0, ["evaluate \\_GPE._E02", .. perCpu]);
            var results = Acpica.Results(absent);
            for (int cpu = 0; cpu < maxVcpus; cpu++)
            {
                Assert.Equal("0000000000000000", results[$"{paths[cpu]}._STA"]);
                // _MAT: the MADT Local APIC entry with UID = APIC ID = cpu, Enabled.
                Assert.Equal($"00 08 {cpu:X2} {cpu:X2} 01 00 00 00", results[$"{paths[cpu]}._MAT"]);
            }
            Assert.Empty(Acpica.Notifications(absent));

            // Every CPU present with an insert event: _STA is 0xF; the scan sends Device Check to each but the boot CPU.
            string inserted = Acpica.Execute(dir, 3, ["evaluate \\_GPE._E02", .. paths.Select(p => $"evaluate {p}._STA")]);
            results = Acpica.Results(inserted);
            foreach (var p in paths) Assert.Equal("000000000000000F", results[$"{p}._STA"]);
            Assert.Equal(Enumerable.Range(1, maxVcpus - 1).Select(c => (CpuHotplugAcpi.ProcessorName(c), "01")), Acpica.Notifications(inserted));

            // Present with a removal event: Eject Request to each but the boot CPU; each of those can run _EJ0.
            string removing = Acpica.Execute(dir, 5, ["evaluate \\_GPE._E02", .. paths.Skip(1).Select(p => $"evaluate {p}._EJ0 1")]);
            Assert.Equal(Enumerable.Range(1, maxVcpus - 1).Select(c => (CpuHotplugAcpi.ProcessorName(c), "03")), Acpica.Notifications(removing));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void TheBootCpuHasNoEjectMethod()
    {
        string dir = Acpica.DumpTables(1, 4);
        try
        {
            var (_, output) = Acpica.Run("acpiexec", dir, null, "-b", "evaluate \\_SB.CPUS.C000._EJ0 1", "DSDT.dat");
            Assert.Contains("AE_NOT_FOUND", output);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
