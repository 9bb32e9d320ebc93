using System.Management.Automation;
using System.Reflection;
using KvmPS.HelpGen;
using KvmPS.Management.Definitions;

namespace KvmPS.PowerShell.Tests;

/// <summary>
/// What a PowerShell user reads: default views at 80 columns, -WhatIf sentences, Get-Help defaults, error
/// messages that name the parameters typed, and confirmations a non-interactive session cannot show.
/// </summary>
public sealed class UserExperienceTests : IDisposable
{
    private readonly PwshSession _pwsh = new();

    public void Dispose() => _pwsh.Dispose();

    private string WriteManifest(string text)
    {
        var path = Path.Combine(_pwsh.Store.Root, "site.psd1");
        File.WriteAllText(path, text);
        return path;
    }

    private const string TwoVmManifest = """
        @{
            VirtualMachines = @(
                @{ Name = 'web1'; MemoryStartupBytes = '256MB'; VcpuCount = 2; State = 'Off'; Disks = @(@{ Path = 'data.raw'; SizeBytes = '1MB' }) }
                @{ Name = 'db'; MemoryStartupBytes = '512MB'; Notes = 'primary' }
            )
        }
        """;

    /// <summary>No line wider than the console, no record dump ("Type { Prop = … }"), no header broken over lines.</summary>
    private static void AssertFits(string rendered, int width = 80)
    {
        var lines = rendered.Split('\n').Select(l => l.TrimEnd('\r')).ToList();
        Assert.All(lines, l => Assert.True(l.Length <= width, $"wider than {width}: '{l}'"));
        Assert.DoesNotMatch(@"\w+ \{ \w+ = ", rendered);
        // A table header fits one line: the dashes come right after it, and before it is a blank line.
        var dashes = lines.FindIndex(l => System.Text.RegularExpressions.Regex.IsMatch(l, @"^-+( +-+)*\s*$"));
        if (dashes >= 0)
            Assert.True(dashes == 1 || lines[dashes - 2].Trim().Length == 0, $"the table header wraps:\n{rendered}");
    }

    [Fact]
    public void Get_KvmDesiredState_has_a_table_and_a_list_view_without_record_dumps()
    {
        var manifest = WriteManifest(TwoVmManifest);
        _pwsh.Run("New-KvmVm db -MemoryStartupBytes 256MB");
        var table = _pwsh.Render("Get-KvmDesiredState $args[0]", 80, manifest);
        AssertFits(table);
        var lines = table.Split('\n').Select(l => l.TrimEnd()).Where(l => l.Length > 0).ToList();
        Assert.Equal("Name                 Ensure  Desired  State    InDesiredState Drift", lines[0]);
        Assert.StartsWith("web1                 Present Off      Absent   False          Ensure", lines[2]);
        Assert.StartsWith("db                   Present -        Off      False          MemoryStartupByte", lines[3]);
        Assert.Equal(4, lines.Count);

        var list = _pwsh.Render("Get-KvmDesiredState $args[0] | Format-List", 80, manifest);
        AssertFits(list);
        Assert.Contains("Memory          : 256 MiB", list);
        Assert.Contains("Boot            : Built-in guest", list);
        Assert.Contains("Disks           : data.raw (raw, 1 MiB)", list);
        Assert.Contains("Drifts          : MemoryStartupBytes: expected 512 MiB, actual 256 MiB", list);

        var status = Assert.Single(_pwsh.Run("Get-KvmDesiredState $args[0]", manifest).Objects<KvmDesiredVm>(), v => v.Name == "db");
        Assert.Equal((true, false), (status.Exists, status.InDesiredState));
    }

    [Fact]
    public void Invoke_KvmDesiredState_prints_one_line_per_action_and_WhatIf_reads_as_one_sentence()
    {
        var manifest = WriteManifest(TwoVmManifest.Replace("State = 'Off'", "State = 'Running'"));
        _pwsh.Run("New-KvmVm db -MemoryStartupBytes 256MB");

        var whatIf = _pwsh.Run("Invoke-KvmDesiredState $args[0] -WhatIf", manifest);
        Assert.Empty(whatIf.Errors);
        Assert.Equal(new[]
        {
            "What if: Performing the operation \"Change VM settings (MemoryStartupBytes 256 MiB -> 512 MiB, MemoryMinimumBytes 256 MiB -> 512 MiB, MemoryMaximumBytes 256 MiB -> 512 MiB, Notes '' -> primary)\" on target \"db\".",
            "What if: Performing the operation \"Create VM\" on target \"web1 (2 vCPUs, 256 MiB)\".",
            "What if: Performing the operation \"Start VM\" on target \"web1\".",
        }, whatIf.HostLines.Select(l => l.TrimEnd()).Where(l => l.Length > 0));
        Assert.Empty(_pwsh.Run("Get-KvmVm web1 -ErrorAction SilentlyContinue").Output);

        // Without starting anything: an Off manifest gives Change + Create, each one row.
        File.WriteAllText(manifest, TwoVmManifest);
        var table = _pwsh.Render("Invoke-KvmDesiredState $args[0]", 80, manifest);
        AssertFits(table);
        var lines = table.Split('\n').Select(l => l.TrimEnd()).Where(l => l.Length > 0).ToList();
        Assert.Equal("Name             Action             Status Message", lines[0]);
        Assert.StartsWith("db               Update             Done", lines[2]);
        Assert.StartsWith("web1             Create             Done", lines[3]);
        Assert.Equal(4, lines.Count);
    }

    [Fact]
    public void Counts_are_pluralized_in_confirmation_texts()
    {
        var one = _pwsh.Run("New-KvmVm solo -WhatIf");
        Assert.Equal("What if: Performing the operation \"Create VM\" on target \"solo (1 vCPU, 256 MiB)\".", one.HostLines.Single(l => l.Length > 0).TrimEnd());
        var two = _pwsh.Run("New-KvmVm duo -ProcessorCount 2 -MemoryStartupBytes 1GB -WhatIf");
        Assert.Contains("\"duo (2 vCPUs, 1 GiB)\"", two.HostLines.Single(l => l.Length > 0));

        _pwsh.Run("New-KvmVm n1");
        _pwsh.Run("Add-KvmNetworkAdapter n1 -BridgeName br0 -MacAddress 52:54:00:00:00:01");
        var remove = _pwsh.Run("Remove-KvmNetworkAdapter n1 -MacAddress 52:54:00:00:00:01 -WhatIf");
        Assert.Contains("\"Remove network 1 adapter 52:54:00:00:00:01\"", remove.HostLines.Single(l => l.Length > 0));
    }

    [Fact]
    public void A_vm_list_view_shows_boot_disks_and_adapters_as_text()
    {
        _pwsh.Run("New-KvmVm v1; Add-KvmDisk v1 data.qcow2 -SizeBytes 1MB -ReadOnly; Add-KvmNetworkAdapter v1 -BridgeName br0 -MacAddress 52:54:00:00:00:02");
        var list = _pwsh.Render("Get-KvmVm v1 | Format-List");
        AssertFits(list);
        Assert.Contains("Boot            : Built-in guest", list);
        Assert.Contains("Disks           : data.qcow2 (qcow2, read-only)", list);
        Assert.Contains("NetworkAdapters : 52:54:00:00:00:02 on bridge br0", list);

        _pwsh.Run("Set-KvmVm v1 -KernelPath /boot/vmlinuz -InitrdPath /boot/initrd.img -KernelArguments console=ttyS0");
        Assert.Contains("Boot            : Kernel /boot/vmlinuz, initrd /boot/initrd.img (console=ttyS0)", _pwsh.Render("Get-KvmVm v1 | Format-List"));
        AssertFits(_pwsh.Render("Get-KvmVm"));
        Assert.Equal("Firmware /usr/share/seabios/bios.bin, boot disk 0", new FirmwareBoot("/usr/share/seabios/bios.bin").ToString());
    }

    [Fact]
    public void Every_output_type_renders_in_80_columns_by_default()
    {
        var manifest = WriteManifest(TwoVmManifest);
        _pwsh.Run("New-KvmVm m1 -MemoryStartupBytes 256MB -MemoryMinimumBytes 128MB -MemoryMaximumBytes 512MB -BalloonEnabled");
        foreach (var script in new[]
                 {
                     "Get-KvmVm", "Get-KvmVm | Format-List",
                     "Invoke-KvmBalloon m1", "Invoke-KvmBalloon m1 | Format-List",
                     "New-KvmDiskImage img.raw -SizeBytes 1MB", "New-KvmDiskImage img2.raw -SizeBytes 1MB | Format-List",
                     "Get-KvmHostPciDevice", "Get-KvmHostPciDevice | Format-List",
                     "Get-KvmDesiredState $args[0]", "Get-KvmDesiredState $args[0] | Format-List",
                     "Test-KvmDesiredState $args[0] -Detailed",
                     "Invoke-KvmDesiredState $args[0] | Format-List",
                 })
            AssertFits(_pwsh.Render(script, 80, manifest));
    }

    [Fact]
    public void Pci_devices_fit_80_columns_and_show_ids_in_hex()
    {
        var table = _pwsh.Render("Get-KvmHostPciDevice");
        AssertFits(table);
        Assert.StartsWith("Address      Id        Class                   Driver       Iommu SR-IOV", table.TrimStart('\r', '\n'));
        var device = new KvmPS.Management.HostDevices.PciHostDevices().List().FirstOrDefault();
        if (device is null)
            return; // a host without PCI: nothing more to see
        Assert.Contains($"{device.Address} {device.VendorId:x4}:{device.DeviceId:x4}", table);
        var list = _pwsh.Render("Get-KvmHostPciDevice $args[0] | Format-List", 80, device.Address.ToString());
        Assert.Contains($"VendorId          : 0x{device.VendorId:x4}", list);
        Assert.Contains($"DeviceId          : 0x{device.DeviceId:x4}", list);
        Assert.Contains($"ClassCode         : 0x{device.ClassCode:x6}", list);
        // The properties stay numbers for scripts.
        Assert.Equal(device.VendorId, Assert.Single(_pwsh.Run("(Get-KvmHostPciDevice $args[0]).VendorId", device.Address.ToString()).Output).BaseObject);
    }

    [Fact]
    public void Errors_name_the_parameters_typed()
    {
        var error = _pwsh.Run("New-KvmVm x -ProcessorCount 4 -MaximumProcessorCount 2").SingleError;
        Assert.Equal("VM 'x': -ProcessorCount: must not exceed -MaximumProcessorCount (4 > 2)", error.ToString());
        Assert.Equal(("InvalidVmDefinition,KvmPS.Commands.NewKvmVmCommand", ErrorCategory.InvalidArgument, (object)"x"),
            (error.FullyQualifiedErrorId, error.CategoryInfo.Category, error.TargetObject));
        Assert.IsType<VmDefinitionException>(error.Exception); // scripts keep the typed exception

        var memory = _pwsh.Run("New-KvmVm y -MemoryStartupBytes 256MB -MemoryMinimumBytes 512MB").SingleError;
        Assert.StartsWith("VM 'y': -MemoryStartupBytes: must be within [-MemoryMinimumBytes, -MemoryMaximumBytes]", memory.ToString());

        // Set-KvmVcpu calls them -Count and -Maximum.
        _pwsh.Run("New-KvmVm z -ProcessorCount 2");
        var vcpu = _pwsh.Run("Set-KvmVcpu z -Count 3").SingleError;
        Assert.Equal("VM 'z': -Count: 3 vCPUs exceed the VM's maximum of 2 (raise -Maximum too)", vcpu.ToString()); // z is off: no restart needed

        // The setting given is the one blamed, and disk paths name -Path / -BackingPath.
        Assert.Equal("VM 'z': -MemoryMinimumBytes: must not exceed -MemoryStartupBytes (1 GiB > 256 MiB); raise -MemoryStartupBytes too",
            _pwsh.Run("Set-KvmVm z -MemoryMinimumBytes 1GB").SingleError.ToString());
        Assert.Equal("VM 'z': -Path: '../../etc/passwd' leaves the VM's disk directory (use an absolute path for an image elsewhere)",
            _pwsh.Run("Add-KvmDisk z ../../etc/passwd").SingleError.ToString());
        Assert.Equal("VM 'z': -BackingPath: a backing image needs Format = qcow2",
            _pwsh.Run("Add-KvmDisk z a.raw -Format Raw -BackingPath b.raw -SizeBytes 1MB").SingleError.ToString());
        Assert.False(File.Exists(Path.Combine(_pwsh.Store.Store.DiskDirectory("z"), "a.raw")), "no image for a refused disk");
        Assert.Equal("Give -Count, -Maximum, -RelativeWeight, -MaximumPercent or several of them.", _pwsh.Run("Set-KvmVcpu z").SingleError.ToString());

        // A manifest hashtable keeps the manifest's keys: that is what the user wrote.
        var manifest = _pwsh.Run("New-KvmVm -Definition @{ Name = 'h'; MemoryStartupBytes = '256MB'; VcpuCount = 4; VcpuMaximum = 2 }").SingleError;
        Assert.Equal("VM 'h': VcpuCount: must not exceed VcpuMaximum (4 > 2)", manifest.ToString());
    }

    [Fact]
    public void Names_with_any_control_character_are_refused_naming_Name()
    {
        for (var c = 0; c < 32; c++)
        {
            var result = _pwsh.Run("New-KvmVm -Name $args[0]", "vm" + (char)c);
            var error = result.SingleError;
            Assert.Equal(("InvalidVmDefinition", ErrorCategory.InvalidArgument), (error.FullyQualifiedErrorId.Split(',')[0], error.CategoryInfo.Category));
            Assert.Contains("-Name:", error.ToString());
            Assert.Empty(result.Output);
        }
        Assert.Empty(_pwsh.Store.Store.ListNames());
    }

    [Fact]
    public void A_confirmation_a_non_interactive_session_cannot_show_is_ConfirmationNotPossible()
    {
        _pwsh.Run("New-KvmVm c1");
        var error = _pwsh.Run("Remove-KvmVm c1").SingleError; // ConfirmImpact High: pwsh must ask, the host cannot
        Assert.Equal(("ConfirmationNotPossible,KvmPS.Commands.RemoveKvmVmCommand", ErrorCategory.InvalidOperation, (object)"c1"),
            (error.FullyQualifiedErrorId, error.CategoryInfo.Category, error.TargetObject));
        Assert.Contains("-Confirm:$false", error.ToString());
        Assert.True(_pwsh.Store.Store.Exists("c1"));

        Assert.Empty(_pwsh.Run("Remove-KvmVm c1 -Confirm:$false").Errors);
        Assert.False(_pwsh.Store.Store.Exists("c1"));
    }

    [Fact]
    public void A_runspace_without_any_host_gets_ConfirmationNotPossible_too()
    {
        using var bare = new PwshSession(withHost: false);
        bare.Run("New-KvmVm c2");
        var error = bare.Run("New-KvmVm c3 -Confirm").SingleError;
        Assert.Equal("ConfirmationNotPossible", error.FullyQualifiedErrorId.Split(',')[0]);
        Assert.False(bare.Store.Store.Exists("c3"));
    }

    [Fact]
    public void Get_Help_shows_the_defaults()
    {
        string Default(string command, string parameter) =>
            (string)Assert.Single(_pwsh.Run("(Get-Help $args[0] -Parameter $args[1]).defaultValue", command, parameter).Output).BaseObject;
        Assert.Equal("1", Default("New-KvmVm", "ProcessorCount"));
        Assert.Equal("256MB", Default("New-KvmVm", "MemoryStartupBytes"));
        Assert.Equal("False", Default("Start-KvmVm", "PassThru"));
        Assert.Equal("30", Default("Stop-KvmVm", "TimeoutSec"));
    }

    public static TheoryData<string> CmdletNames() => ContractTests.CmdletNames();

    /// <summary>Every parameter whose property starts with a value documents that value; switches document False.</summary>
    [Theory]
    [MemberData(nameof(CmdletNames))]
    public void Help_pages_document_the_defaults_the_code_has(string name)
    {
        var type = Repo.Module.GetTypes().Single(t => t.GetCustomAttribute<CmdletAttribute>() is { } a && $"{a.VerbName}-{a.NounName}" == name);
        var cmdlet = Activator.CreateInstance(type)!;
        var page = MarkdownReader.ReadFile(Path.Combine(Repo.Docs, name + ".md"));
        foreach (var property in type.GetProperties().Where(p => p.GetCustomAttributes<ParameterAttribute>().Any()))
        {
            var documented = page.Parameters.Single(p => p.Name == property.Name).DefaultValue;
            var value = property.GetValue(cmdlet);
            switch (value)
            {
                case SwitchParameter:
                    Assert.True(documented == "False", $"{name} -{property.Name}: a switch's default is False, the page says '{documented}'");
                    break;
                case long bytes when bytes != 0:
                    Assert.True(documented != "None" && SizeParser.ParseBytes(documented) == bytes, $"{name} -{property.Name} defaults to {bytes}, the page says '{documented}'");
                    break;
                case int number when number != 0:
                    Assert.True(documented == number.ToString(System.Globalization.CultureInfo.InvariantCulture), $"{name} -{property.Name} defaults to {number}, the page says '{documented}'");
                    break;
            }
        }
    }
}
