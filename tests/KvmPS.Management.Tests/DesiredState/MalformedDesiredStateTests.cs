using KvmPS.Management.DesiredState;
using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Management.Tests.DesiredState;

/// <summary>Every broken manifest fails with a message naming file:line:column, the VM and the key.</summary>
public sealed class MalformedDesiredStateTests
{
    private const string D = "Defaults = @{ MemoryStartupBytes = 256MB }\n";

    /// <summary>(manifest text, line, column, expected message after "m.psd1:line:col: ").</summary>
    public static TheoryData<string, int, int, string> Corpus => new()
    {
        // unknown keys
        { "@{ Default = @{} }", 1, 4, "Default: unknown key 'Default'" },
        { "@{ VirtualMachines = @( @{ Name = 'a'; MemoryStartupBytes = 1GB; Vcpus = 2 } ) }", 1, 66, "VM 'a': Vcpus: unknown key 'Vcpus'" },
        { "@{\n  Defaults = @{ Foo = 1 }\n  VirtualMachines = @()\n}", 2, 17, "Defaults.Foo: unknown key 'Foo'" },
        { "@{ Defaults = @{ Name = 'x' }; VirtualMachines = @() }", 1, 18, "Defaults.Name: cannot have a default" },
        { "@{ Defaults = @{ Ensure = 'Absent' }; VirtualMachines = @() }", 1, 18, "Defaults.Ensure: cannot have a default" },
        { "@{ VirtualMachines = @(\n  @{ Name = 'a'; MemoryStartupBytes = 1GB; Disks = @( @{ Path = 'x.raw'; Sise = 1GB } ) }\n) }", 2, 74, "VM 'a': Disks[0].Sise: unknown key 'Sise'" },
        { "@{ VirtualMachines = @( @{ Name = 'a'; MemoryStartupBytes = 1GB; Boot = @{ Kernel = '/k' } } ) }", 1, 76, "VM 'a': Boot.Kernel: unknown key 'Kernel'" },
        // wrong types
        { "@{ " + D + "VirtualMachines = @( @{ Name = 'a'; VcpuCount = 'two' } ) }", 2, 49, "VM 'a': VcpuCount: must be a whole number, not the string 'two'" },
        { "@{ " + D + "VirtualMachines = @( @{ Name = 'a'; VcpuCount = 1.5 } ) }", 2, 49, "VM 'a': VcpuCount: must be a whole number" },
        { "@{ " + D + "VirtualMachines = @( @{ Name = 'a'; Autostart = 'yes' } ) }", 2, 49, "VM 'a': Autostart: must be $true or $false, not the string 'yes'" },
        { "@{ " + D + "VirtualMachines = @( @{ Name = 'a'; RestartIfNeeded = 1 } ) }", 2, 55, "VM 'a': RestartIfNeeded: must be $true or $false, not the number 1" },
        { "@{ " + D + "VirtualMachines = @( @{ Name = 'a'; Notes = @('x', 'y') } ) }", 2, 45, "VM 'a': Notes: must be a string, not an array" },
        { "@{ " + D + "VirtualMachines = @( @{ Name = 'a'; Boot = 'kernel' } ) }", 2, 44, "VM 'a': Boot: must be a hashtable, not the string 'kernel'" },
        { "@{ " + D + "VirtualMachines = @( @{ Name = 'a'; MemoryStartupBytes = $true } ) }", 2, 58, "VM 'a': MemoryStartupBytes: must be a size" },
        { "@{ " + D + "VirtualMachines = @( @{ Name = 'a'; MemoryStartupBytes = '12 apples' } ) }", 2, 58, "VM 'a': MemoryStartupBytes: Invalid size '12 apples'" },
        { "@{ " + D + "VirtualMachines = @( @{ Name = 'a'; Disks = @( 'x.raw' ) } ) }", 2, 48, "VM 'a': Disks[0]: must be a hashtable, not the string 'x.raw'" },
        { "@{ VirtualMachines = 'web1' }", 1, 22, "VirtualMachines: must be a list of hashtables, not the string 'web1'" },
        { "@{ VirtualMachines = @( 'web1' ) }", 1, 25, "VirtualMachines[0]: must be a hashtable (a VM entry), not the string 'web1'" },
        { "@{ Defaults = 5; VirtualMachines = @() }", 1, 15, "Defaults: must be a hashtable, not the number 5" },
        { "@{ " + D + "VirtualMachines = @( @{ Name = 42 } ) }", 2, 32, "VirtualMachines[0].Name: must be a string, not the number 42" },
        // out of range
        { "@{ " + D + "VirtualMachines = @( @{ Name = 'a'; VcpuCount = 0 } ) }", 2, 49, "VM 'a': VcpuCount: must be at least 1 (got 0)" },
        { "@{ " + D + "VirtualMachines = @( @{ Name = 'a'; VcpuCount = 300 } ) }", 2, 49, "VM 'a': VcpuMaximum: must be at most 255 (got 300)" },
        { "@{ " + D + "VirtualMachines = @( @{ Name = 'a'; VcpuCount = 4; VcpuMaximum = 2 } ) }", 2, 49, "VM 'a': VcpuCount: must not exceed VcpuMaximum (4 > 2)" },
        { "@{ " + D + "VirtualMachines = @( @{ Name = 'a'; MemoryStartupBytes = 1000 } ) }", 2, 58, "VM 'a': MemoryStartupBytes: must be a multiple of 4096" },
        { "@{ " + D + "VirtualMachines = @( @{ Name = 'a'; MemoryMaximumBytes = 128MB } ) }", 1, 39, "VM 'a': MemoryStartupBytes: must be within [MemoryMinimumBytes, MemoryMaximumBytes]" },
        { "@{ " + D + "VirtualMachines = @( @{ Name = 'a'; NumaNode = 5000 } ) }", 2, 48, "VM 'a': NumaNode: must be between 0 and 1023 (got 5000)" },
        { "@{ Defaults = @{ MemoryStartupBytes = 1001 }\nVirtualMachines = @( @{ Name = 'a' } ) }", 1, 39, "VM 'a': MemoryStartupBytes: must be a multiple of 4096" },
        // bad Ensure / State
        { "@{ " + D + "VirtualMachines = @( @{ Name = 'a'; Ensure = 'Gone' } ) }", 2, 46, "VM 'a': Ensure: 'Gone' is not one of 'Present', 'Absent'" },
        { "@{ " + D + "VirtualMachines = @( @{ Name = 'a'; Ensure = $false } ) }", 2, 46, "VM 'a': Ensure: must be one of 'Present', 'Absent', not $false" },
        { "@{ " + D + "VirtualMachines = @( @{ Name = 'a'; State = 'Started' } ) }", 2, 45, "VM 'a': State: 'Started' is not one of 'Running', 'Off', 'Paused'" },
        { "@{ Defaults = @{ State = 'On' }; VirtualMachines = @() }", 1, 26, "Defaults.State: 'On' is not one of 'Running', 'Off', 'Paused'" },
        { "@{ VirtualMachines = @( @{ Name = 'a'; Ensure = 'Absent'; State = 'Running' } ) }", 1, 59, "VM 'a': State: has no meaning when Ensure = 'Absent'" },
        // missing / invalid name, missing required
        { "@{ " + D + "VirtualMachines = @(\n  @{ VcpuCount = 2 }\n) }", 3, 3, "VirtualMachines[0].Name: is required" },
        { "@{ " + D + "VirtualMachines = @( @{ Name = '-bad name' } ) }", 2, 32, "VM '-bad name': Name: must be 1-63 characters" },
        { "@{ VirtualMachines = @( @{ Name = 'a' } ) }", 1, 25, "VM 'a': MemoryStartupBytes: is required" },
        { "@{ Defaults = @{ VcpuCount = 1 } }", 1, 1, "VirtualMachines: is required" },
        { "Name = 'x'", 1, 1, "Commands are not allowed in a data file: 'Name'" },
        // duplicates in one file
        { "@{ " + D + "VirtualMachines = @(\n  @{ Name = 'a' }\n  @{ Name = 'a' }\n) }", 4, 3, "VM 'a': Name: the VM is defined twice (first at m.psd1:3:3)" },
        // syntax errors from the reader
        { "@{ VirtualMachines = @( @{ Name = 'a' } ", 1, 41, "Missing closing" },
        { "@{ VirtualMachines = @( @{ Name = $name } ) }", 1, 35, "Variables are not allowed in a data file" },
        { "@{ VirtualMachines = @( @{ Name = 'a'; Name = 'b' } ) }", 1, 40, "Duplicate key 'Name'" },
        { "@{ Defaults = @{ MemoryStartupBytes = 256MB + 1 } }", 1, 45, "Operator '+' is not allowed" },
        { "@{ VirtualMachines = @( @{ Name = 'a'; Notes = \"hi $env:USER\" } ) }", 1, 52, "Variable expansion" },    };

    [Theory]
    [MemberData(nameof(Corpus))]
    public void Malformed_manifest_reports_position_and_reason(string text, int line, int column, string expected)
    {
        var error = Assert.Throws<DesiredStateException>(() => DesiredStateReader.Parse(text, "m.psd1"));
        Assert.Equal("m.psd1", error.File);
        Assert.True(line == error.Line && column == error.Column, $"expected {line}:{column}, got {error.Line}:{error.Column}: {error.Message}");
        Assert.StartsWith($"m.psd1:{line}:{column}: ", error.Message);
        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Boot_path_with_a_nul_is_refused_with_its_position()
    {
        // Found by fuzzing (docs/fuzzing.md): a relative boot path with a NUL threw ArgumentException from Path.GetFullPath.
        var text = "@{ VirtualMachines = @( @{ Name = 'a'; MemoryStartupBytes = 128MB; Boot = @{ KernelPath = 'vm\0linuz' } } ) }";
        var error = Assert.Throws<DesiredStateException>(() => DesiredStateReader.Parse(text, "m.psd1", "/base"));
        Assert.StartsWith("m.psd1:1:", error.Message);
        Assert.Contains("must not contain NUL characters", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Corpus_has_at_least_thirty_cases() => Assert.True(Corpus.Count >= 30);

    [Fact]
    public void Duplicate_vm_across_files_names_both_positions()
    {
        using var dir = new TempDirectory();
        var a = Path.Combine(dir.Path, "a.psd1");
        var b = Path.Combine(dir.Path, "b.psd1");
        File.WriteAllText(a, "@{\n  VirtualMachines = @(\n    @{ Name = 'web'; MemoryStartupBytes = 128MB }\n  )\n}");
        File.WriteAllText(b, "@{\n  VirtualMachines = @( @{ Name = 'db'; MemoryStartupBytes = 128MB }, @{ Name = 'web'; MemoryStartupBytes = 128MB } )\n}");
        var error = Assert.Throws<DesiredStateException>(() => DesiredStateReader.ReadFiles(new[] { a, b }));
        Assert.Equal($"{b}:2:70: VM 'web': Name: the VM is defined twice (first at {a}:3:5)", error.Message);
        Assert.Equal("web", error.VmName);
        Assert.Equal(2, error.Line);
        Assert.Equal(70, error.Column);
    }

    [Fact]
    public void Missing_manifest_file_is_reported_by_path()
    {
        var error = Assert.Throws<DesiredStateException>(() => DesiredStateReader.ReadFiles(new[] { "/nonexistent/kvmps/host.psd1" }));
        Assert.Equal("/nonexistent/kvmps/host.psd1: the manifest file does not exist", error.Message);
        Assert.Equal(0, error.Line);
    }

    [Fact]
    public void Directory_instead_of_file_is_reported()
    {
        using var dir = new TempDirectory();
        var error = Assert.Throws<DesiredStateException>(() => DesiredStateReader.ReadFiles(new[] { dir.Path }));
        Assert.Contains("is a directory", error.Message);
    }

    [Fact]
    public void Error_in_second_file_is_reported_with_that_file()
    {
        using var dir = new TempDirectory();
        var a = Path.Combine(dir.Path, "ok.psd1");
        var b = Path.Combine(dir.Path, "bad.psd1");
        File.WriteAllText(a, "@{ Name = 'one'; MemoryStartupBytes = 128MB }");
        File.WriteAllText(b, "@{ Name = 'two'; MemoryStartupBytes = 128MB;\n  HugePages = 'giant' }");
        var error = Assert.Throws<DesiredStateException>(() => DesiredStateReader.ReadFiles(new[] { a, b }));
        Assert.Equal(b, error.File);
        Assert.Equal((2, 15), (error.Line, error.Column));
        Assert.Contains("VM 'two': HugePages: 'giant' is not one of: none, thp, hugetlbfs", error.Message);
    }
}
