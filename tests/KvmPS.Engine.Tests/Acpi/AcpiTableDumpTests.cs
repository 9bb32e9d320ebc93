using System.Text.RegularExpressions;
using KvmPS.Acpi;
using KvmPS.Contract;
using KvmPS.Vm;
using KvmPS.Vmm;

namespace KvmPS.Engine.Tests.Acpi;

/// <summary>
/// <c>kvmps-vmm --acpi-tables-out DIR</c> and ACPICA's verdict on what it writes: <c>iasl -d</c> disassembles every
/// table without an error or warning, and the disassembled DSDT compiles again, for 1, 4 and 64 maximum vCPUs.
/// </summary>
public sealed class AcpiTableDumpTests
{
    private static readonly string[] ExpectedFiles = ["APIC.dat", "DSDT.dat", "FACP.dat", "MCFG.dat", "RSDT.dat", "XSDT.dat"];

    [Fact]
    public void WritesOneFilePerSignatureWithTheBytesTheGuestGets()
    {
        string dir = Acpica.DumpTables(2, 4);
        try
        {
            Assert.Equal(ExpectedFiles, Directory.GetFiles(dir).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray());
            var config = new MachineConfig { VcpuCount = 2, MaxVcpus = 4 };
            foreach (var (_, bytes) in AcpiTables.Build(VirtualMachine.AcpiConfigFor(config)).Skip(1)) // [0] is the RSDP
                Assert.Equal(bytes, File.ReadAllBytes(Path.Combine(dir, AcpiTableDump.FileNameFor(bytes))));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void ADirectoryThatCannotBeWrittenIsAHostResourceErrorNamingIt()
    {
        string file = Path.GetTempFileName(); // a file where the directory should be
        try
        {
            var stderr = new StringWriter();
            int rc = VmmHost.Main(["--acpi-tables-out", Path.Combine(file, "tables"), "--serial", "none"], stderr);
            Assert.Equal(VmmExitCode.HostResource, rc);
            Assert.Contains(Path.Combine(file, "tables"), stderr.ToString());
        }
        finally { File.Delete(file); }
    }

    [Fact]
    public void AMaximumBelowTheCountIsAUsageErrorAndWritesNothing()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"kvmps-acpi-bad-{Guid.NewGuid():N}");
        var stderr = new StringWriter();
        int rc = VmmHost.Main(["--acpi-tables-out", dir, "--vcpus", "4", "--max-vcpus", "2", "--serial", "none"], stderr);
        Assert.Equal(VmmExitCode.UsageError, rc);
        Assert.Contains("maximum vCPUs 2", stderr.ToString());
        Assert.False(Directory.Exists(dir));
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(2, 4)]
    [InlineData(1, 64)]
    public void IaslDisassemblesEveryTableCleanlyAndTheDsdtRecompiles(int vcpus, int maxVcpus)
    {
        string dir = Acpica.DumpTables(vcpus, maxVcpus);
        try
        {
            foreach (string table in ExpectedFiles)
            {
                var (rc, output) = Acpica.Run("iasl", dir, null, "-d", table);
                Assert.True(rc == 0, $"iasl -d {table} exited {rc}:\n{output}");
                Assert.DoesNotMatch(new Regex("error|warning", RegexOptions.IgnoreCase), output);
                string dsl = Path.Combine(dir, Path.ChangeExtension(table, ".dsl"));
                Assert.True(File.Exists(dsl), $"iasl -d {table} wrote no {Path.GetFileName(dsl)}:\n{output}");
                Assert.DoesNotMatch(new Regex(@"\*\*\*\*|Invalid|Unknown", RegexOptions.IgnoreCase), File.ReadAllText(dsl));
            }

            var (compileRc, compileOutput) = Acpica.Run("iasl", dir, null, "-p", "DSDT-recompiled", "DSDT.dsl");
            Assert.True(compileRc == 0, $"iasl DSDT.dsl exited {compileRc}:\n{compileOutput}");
            Assert.Matches(new Regex(@"Compilation successful\. 0 Errors, 0 Warnings"), compileOutput);
            Assert.True(new FileInfo(Path.Combine(dir, "DSDT-recompiled.aml")).Length > 36);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
