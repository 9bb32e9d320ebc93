using System.Management.Automation;
using KvmPS.Management.Balloon;
using KvmPS.Management.Definitions;
using KvmPS.Management.HostDevices;
using KvmPS.Management.Lifecycle;
using KvmPS.PowerShell.Internal;

namespace KvmPS.PowerShell.Tests;

/// <summary>
/// The cmdlets run in a real runspace (Microsoft.PowerShell.SDK) with the built module imported, against a temp
/// store. No VM is started here: running VMs are the management tests' and the Pester tests' business.
/// </summary>
public sealed class CmdletExecutionTests : IDisposable
{
    private readonly PwshSession _pwsh = new();

    public void Dispose() => _pwsh.Dispose();

    private VmStoreView Store => new(_pwsh.Store);

    private KvmVm NewVm(string name, int cpus = 1)
    {
        var result = _pwsh.Run("New-KvmVm -Name $args[0] -MemoryStartupBytes 128MB -ProcessorCount $args[1] -MaximumProcessorCount 4", name, cpus);
        Assert.Empty(result.Errors);
        return Assert.Single(result.Objects<KvmVm>());
    }

    [Fact]
    public void New_creates_an_Off_vm_with_Hyper_V_style_settings()
    {
        var vm = NewVm("web1", cpus: 2);
        Assert.Equal("web1", vm.Name);
        Assert.Equal(VmState.Off, vm.State);
        Assert.Equal(2, vm.ProcessorCount);
        Assert.Equal(4, vm.MaximumProcessorCount);
        Assert.Equal(128, vm.MemoryMB);
        Assert.Equal(vm.MemoryStartupBytes, vm.MemoryMinimumBytes);
        Assert.Equal(TimeSpan.Zero, vm.Uptime);
        Assert.True(Store.Exists("web1"));
    }

    [Fact]
    public void New_without_settings_gets_the_documented_defaults()
    {
        var vm = Assert.Single(_pwsh.Run("New-KvmVm plain").Objects<KvmVm>());
        Assert.Equal((1, 1, 256L << 20), (vm.ProcessorCount, vm.MaximumProcessorCount, vm.MemoryStartupBytes));
        Assert.IsType<DefaultGuestBoot>(vm.Boot);
    }

    [Fact]
    public void New_from_a_definition_hashtable()
    {
        var result = _pwsh.Run("New-KvmVm -Definition @{ Name = 'db'; MemoryStartupBytes = '256MB'; VcpuCount = 2 }");
        Assert.Empty(result.Errors);
        var vm = Assert.Single(result.Objects<KvmVm>());
        Assert.Equal(256, vm.MemoryMB);
        Assert.Equal(2, vm.ProcessorCount);
    }

    [Fact]
    public void New_takes_definitions_from_the_pipeline_and_names_by_position()
    {
        var piped = _pwsh.Run("@{ Name = 'p1'; MemoryStartupBytes = '128MB' }, [ordered]@{ Name = 'p2'; MemoryStartupBytes = '64MB' } | New-KvmVm");
        Assert.Empty(piped.Errors);
        Assert.Equal(new[] { "p1", "p2" }, piped.Objects<KvmVm>().Select(v => v.Name));
        Assert.Equal("p3", Assert.Single(_pwsh.Run("New-KvmVm p3").Objects<KvmVm>()).Name);
        Assert.Equal("p4", Assert.Single(_pwsh.Run("[pscustomobject]@{ Name = 'p4' } | New-KvmVm").Objects<KvmVm>()).Name);
    }

    [Fact]
    public void New_with_WhatIf_changes_nothing_and_a_duplicate_is_VmAlreadyExists()
    {
        var whatIf = _pwsh.Run("New-KvmVm x1 -WhatIf");
        Assert.Empty(whatIf.Output);
        Assert.False(Store.Exists("x1"));

        NewVm("x1");
        var error = _pwsh.Run("New-KvmVm x1").SingleError;
        Assert.Equal("VmAlreadyExists,KvmPS.Commands.NewKvmVmCommand", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.ResourceExists, error.CategoryInfo.Category);
        Assert.Equal("x1", error.TargetObject);
    }

    [Fact]
    public void Get_lists_all_or_by_wildcard_and_reports_missing_plain_names()
    {
        NewVm("web-1");
        NewVm("web-2");
        NewVm("db-1");
        Assert.Equal(new[] { "db-1", "web-1", "web-2" }, _pwsh.Run("Get-KvmVm").Objects<KvmVm>().Select(v => v.Name));
        var output = _pwsh.Run("Get-KvmVm -Name web*, nosuch, none*");
        Assert.Equal(new[] { "web-1", "web-2" }, output.Objects<KvmVm>().Select(v => v.Name));
        var error = output.SingleError;
        Assert.Equal(("VmNotFound", ErrorCategory.ObjectNotFound, (object)"nosuch"), (error.FullyQualifiedErrorId.Split(',')[0], error.CategoryInfo.Category, error.TargetObject));
    }

    [Fact]
    public void Piped_vms_are_stopped_only_with_confirmation()
    {
        NewVm("web-1");
        NewVm("web-2");
        var whatIf = _pwsh.Run("Get-KvmVm | Stop-KvmVm -WhatIf");
        Assert.Empty(whatIf.Errors);
        Assert.Equal(2, whatIf.HostLines.Count(l => l.StartsWith("What if:", StringComparison.Ordinal)));
        // Stopping an Off VM is a no-op that says so.
        var stop = _pwsh.Run("Get-KvmVm | Stop-KvmVm -PassThru");
        Assert.Empty(stop.Errors);
        Assert.All(stop.Objects<KvmVm>(), v => Assert.Equal(VmState.Off, v.State));
        Assert.Equal(2, stop.Objects<KvmVm>().Count());
    }

    [Fact]
    public void Errors_for_piped_vms_target_the_piped_object()
    {
        NewVm("gone");
        var result = _pwsh.Run("$vm = Get-KvmVm gone; $null = Remove-KvmVm gone -Confirm:$false; $vm | Suspend-KvmVm");
        var error = result.SingleError;
        Assert.Equal("VmNotFound", error.FullyQualifiedErrorId.Split(',')[0]);

        NewVm("off");
        var stateError = _pwsh.Run("Suspend-KvmVm off").SingleError;
        Assert.Equal(("InvalidVmState", ErrorCategory.InvalidOperation), (stateError.FullyQualifiedErrorId.Split(',')[0], stateError.CategoryInfo.Category));
        Assert.Equal("off", stateError.TargetObject);
    }

    [Fact]
    public void Set_KvmVcpu_updates_the_definition_and_validates_against_the_maximum()
    {
        NewVm("web1");
        var output = _pwsh.Run("Set-KvmVcpu web1 -Count 3 -PassThru");
        Assert.Empty(output.Errors);
        Assert.Empty(output.Warnings); // the VM is off: stored, no restart needed
        Assert.Equal(3, Assert.Single(output.Objects<KvmVm>()).ProcessorCount);

        var error = _pwsh.Run("Set-KvmVcpu web1 -Count 8").SingleError;
        Assert.Equal(("InvalidVmSetting", ErrorCategory.InvalidArgument), (error.FullyQualifiedErrorId.Split(',')[0], error.CategoryInfo.Category));
        Assert.Equal(3, Store.Get("web1").Vcpus.Count);

        _pwsh.Run("Set-KvmVcpu web1 -Count 8 -Maximum 8");
        Assert.Equal(new VcpuSettings(8, 8), Store.Get("web1").Vcpus);
    }

    [Fact]
    public void Invoke_KvmBalloon_reports_and_sets_the_memory_target()
    {
        _pwsh.Run("New-KvmVm b1 -MemoryStartupBytes 256MB -MemoryMinimumBytes 128MB -MemoryMaximumBytes 512MB -BalloonEnabled");
        var report = Assert.Single(_pwsh.Run("Invoke-KvmBalloon b1").Objects<VmMemoryStatus>());
        Assert.Equal((256L << 20, 128L << 20, 512L << 20, true), (report.TargetBytes, report.MinimumBytes, report.MaximumBytes, report.BalloonEnabled));
        Assert.Null(report.CurrentBytes);

        var set = _pwsh.Run("Invoke-KvmBalloon b1 -TargetBytes 192MB");
        Assert.Equal(192L << 20, Assert.Single(set.Objects<VmMemoryStatus>()).TargetBytes);

        var outside = _pwsh.Run("Invoke-KvmBalloon b1 -TargetBytes 1GB").SingleError;
        Assert.Equal("InvalidVmSetting", outside.FullyQualifiedErrorId.Split(',')[0]);
        Assert.Contains("-TargetBytes", outside.ToString());
    }

    [Fact]
    public void Set_KvmVm_keeps_fixed_memory_fixed_and_widens_a_range()
    {
        NewVm("s1");
        Assert.Empty(_pwsh.Run("Set-KvmVm s1 -MemoryStartupBytes 256MB -Notes hello -Autostart $true").Errors);
        var d = Store.Get("s1");
        Assert.Equal(MemorySettings.Fixed(256L << 20), d.Memory);
        Assert.Equal("hello", d.Notes);
        Assert.True(d.Autostart);
        var verbose = _pwsh.Run("Set-KvmVm s1 -MemoryMaximumBytes 1GB -Verbose").Verbose;
        Assert.Contains("VM 's1': -MemoryMaximumBytes: 256 MiB -> 1 GiB (Stored)", verbose);
        Assert.Equal(new MemorySettings(256L << 20, 256L << 20, 1L << 30), Store.Get("s1").Memory);
    }

    [Fact]
    public void Set_KvmVm_kernel_paths_resolve_against_the_PowerShell_location_and_an_empty_kernel_returns_to_the_built_in_guest()
    {
        NewVm("k1");
        Directory.CreateDirectory(Path.Combine(_pwsh.Store.Root, "boot"));
        Assert.Empty(_pwsh.Run("Set-Location boot; Set-KvmVm k1 -KernelPath vmlinux -KernelArguments console=ttyS0; Set-Location ..").Errors);
        var boot = Assert.IsType<DirectKernelBoot>(Store.Get("k1").Boot);
        Assert.Equal((Path.Combine(_pwsh.Store.Root, "boot", "vmlinux"), "console=ttyS0"), (boot.KernelPath, boot.Cmdline));

        _pwsh.Run("Set-KvmVm k1 -KernelPath ''");
        Assert.IsType<DefaultGuestBoot>(Store.Get("k1").Boot);

        var error = _pwsh.Run("Set-KvmVm k1 -InitrdPath /x/initrd").SingleError;
        Assert.Equal("InvalidVmDefinition", error.FullyQualifiedErrorId.Split(',')[0]);
        Assert.StartsWith("VM 'k1': -InitrdPath: needs -KernelPath", error.ToString());
    }

    [Fact]
    public void Disks_are_created_attached_and_detached()
    {
        NewVm("d1");
        var add = _pwsh.Run("Add-KvmDisk d1 data.qcow2 -SizeBytes 64MB -PassThru");
        Assert.Empty(add.Errors);
        var disk = Assert.Single(Assert.Single(add.Objects<KvmVm>()).Disks);
        Assert.Equal(("data.qcow2", DiskFormat.Qcow2), (disk.Path, disk.Format));
        Assert.True(File.Exists(Path.Combine(_pwsh.Store.Store.DiskDirectory("d1"), "data.qcow2")));

        var missing = _pwsh.Run("Add-KvmDisk d1 /nonexistent/x.raw").SingleError;
        Assert.Equal(("DiskImageNotFound", (object)"/nonexistent/x.raw"), (missing.FullyQualifiedErrorId.Split(',')[0], missing.TargetObject));
        Assert.Equal("Disk image '/nonexistent/x.raw' does not exist; give -SizeBytes to create it.", missing.ToString());

        _pwsh.Run("Remove-KvmDisk d1 data.qcow2 -Confirm:$false");
        Assert.Empty(Store.Get("d1").Disks);
        Assert.True(File.Exists(Path.Combine(_pwsh.Store.Store.DiskDirectory("d1"), "data.qcow2")), "the image is kept");
        var notAttached = _pwsh.Run("Remove-KvmDisk d1 data.qcow2").SingleError;
        Assert.Equal(("DeviceNotFound", (object)"data.qcow2"), (notAttached.FullyQualifiedErrorId.Split(',')[0], notAttached.TargetObject));
    }

    [Fact]
    public void A_disk_created_for_a_definition_that_refuses_it_is_rolled_back()
    {
        NewVm("d2");
        _pwsh.Run("Add-KvmDisk d2 a.raw -SizeBytes 1MB");
        // Same definition path twice: the image is created, the definition refuses the duplicate, the image goes again.
        var image = Path.Combine(_pwsh.Store.Root, "elsewhere.raw");
        Assert.Empty(_pwsh.Run("Add-KvmDisk d2 $args[0] -SizeBytes 1MB", image).Errors);
        File.Delete(image);
        var error = _pwsh.Run("Add-KvmDisk d2 $args[0] -SizeBytes 1MB", image).SingleError;
        Assert.Equal("InvalidVmDefinition", error.FullyQualifiedErrorId.Split(',')[0]);
        Assert.False(File.Exists(image), "the image created for the refused disk is deleted");
        Assert.Equal(2, Store.Get("d2").Disks.Count);
    }

    [Fact]
    public void Network_adapters_get_the_same_macs_a_manifest_would_give_them()
    {
        NewVm("n1");
        _pwsh.Run("Add-KvmNetworkAdapter n1 -BridgeName br0");
        _pwsh.Run("Add-KvmNetworkAdapter n1 -TapName tap7 -MacAddress 52:54:00:aa:bb:cc");
        _pwsh.Run("Add-KvmNetworkAdapter n1 -BridgeName br1");
        var adapters = Store.Get("n1").NetworkAdapters;
        Assert.Equal(3, adapters.Count);
        // One rule for cmdlets and manifests: listing the same adapters in a manifest yields the same MACs.
        var manifest = VmDefinitionReader.FromDictionary(new System.Collections.Hashtable
        {
            ["Name"] = "n1",
            ["MemoryStartupBytes"] = "128MB",
            ["NetworkAdapters"] = new object[]
            {
                new System.Collections.Hashtable { ["Bridge"] = "br0" },
                new System.Collections.Hashtable { ["Tap"] = "tap7", ["MacAddress"] = "52:54:00:aa:bb:cc" },
                new System.Collections.Hashtable { ["Bridge"] = "br1" },
            },
        });
        Assert.Equal(manifest.NetworkAdapters.Select(a => a.MacAddress), adapters.Select(a => a.MacAddress));
        Assert.Equal("br0", adapters[0].BridgeName);

        _pwsh.Run("Remove-KvmNetworkAdapter n1 -MacAddress 52-54-00-AA-BB-CC -Confirm:$false");
        Assert.Equal(2, Store.Get("n1").NetworkAdapters.Count);

        var neither = _pwsh.Run("Add-KvmNetworkAdapter n1").SingleError;
        Assert.Equal("InvalidValue", neither.FullyQualifiedErrorId.Split(',')[0]);
        var badMac = _pwsh.Run("Add-KvmNetworkAdapter n1 -BridgeName br0 -MacAddress zz").SingleError;
        Assert.Equal(("InvalidValue", (object)"zz"), (badMac.FullyQualifiedErrorId.Split(',')[0], badMac.TargetObject));
        Assert.Equal("-MacAddress: Invalid MAC address 'zz': expected six hex octets separated by ':' (e.g. 52:54:00:12:34:56)", badMac.ToString());
    }

    [Fact]
    public void Pci_passthrough_refuses_devices_this_host_cannot_pass_through()
    {
        NewVm("p1");
        // No such function on any host: the check refuses it and nothing changes.
        var missing = _pwsh.Run("Add-KvmPciPassthrough p1 -Address 0000:ee:1f.7").SingleError;
        Assert.Equal(("PciDeviceUnusable", (object)"0000:ee:1f.7"), (missing.FullyQualifiedErrorId.Split(',')[0], missing.TargetObject));
        Assert.Contains("0000:ee:1f.7", missing.Exception.Message);
        Assert.Empty(Store.Get("p1").PciPassthrough);

        var bad = _pwsh.Run("Add-KvmPciPassthrough p1 -Address 3:00.0").SingleError;
        Assert.Equal("InvalidValue", bad.FullyQualifiedErrorId.Split(',')[0]);
        Assert.StartsWith("-Address:", bad.ToString());

        // Stored by management (the host check passed elsewhere): attached twice is refused, removal works.
        _pwsh.Manager.AddPciPassthrough("p1", new[] { PciAddress.Parse("0000:03:00.0") });
        Assert.Throws<VmDeviceAlreadyAttachedException>(() => _pwsh.Manager.AddPciPassthrough("p1", new[] { PciAddress.Parse("0000:03:00.0") }));
        var again = _pwsh.Run("Add-KvmPciPassthrough p1 -Address 0000:03:00.0").SingleError;
        Assert.Equal(("DeviceAlreadyAttached", (object)"0000:03:00.0"), (again.FullyQualifiedErrorId.Split(',')[0], again.TargetObject));
        var notThere = _pwsh.Run("Remove-KvmPciPassthrough p1 -Address 0000:04:00.0").SingleError;
        Assert.Equal("DeviceNotFound", notThere.FullyQualifiedErrorId.Split(',')[0]);
        _pwsh.Run("Remove-KvmPciPassthrough p1 -Address 0000:03:00.0 -Confirm:$false");
        Assert.Empty(Store.Get("p1").PciPassthrough);
    }

    [Fact]
    public void Get_KvmHostPciDevice_filters_by_address_wildcard_and_driver_and_reports_missing_addresses()
    {
        var all = new PciHostDevices().List();
        var result = _pwsh.Run("Get-KvmHostPciDevice -Address 0000:*, 0000:ee:1f.7");
        Assert.Equal(all.Select(d => d.Address), result.Objects<PciHostDevice>().Select(d => d.Address));
        Assert.Equal(("HostDeviceNotFound", (object)"0000:ee:1f.7"), (result.SingleError.FullyQualifiedErrorId.Split(',')[0], result.SingleError.TargetObject));
        if (all.FirstOrDefault(d => d.Driver is not null) is { } bound)
            Assert.All(_pwsh.Run("Get-KvmHostPciDevice -Driver $args[0]", bound.Driver).Objects<PciHostDevice>(), d => Assert.Equal(bound.Driver, d.Driver));
    }

    [Fact]
    public void Remove_asks_and_deletes()
    {
        NewVm("r1");
        _pwsh.Host.Answers.Enqueue(2); // No
        Assert.Empty(_pwsh.Run("Remove-KvmVm r1").Errors);
        Assert.Single(_pwsh.Host.Prompts);
        Assert.True(Store.Exists("r1"));
        _pwsh.Host.Answers.Enqueue(0); // Yes
        _pwsh.Run("Remove-KvmVm r*");
        Assert.False(Store.Exists("r1"));
    }

    [Fact]
    public void Console_log_tail()
    {
        NewVm("c1");
        File.WriteAllText(_pwsh.Store.Store.SerialLogPath("c1"), "boot\nready\nlogin:\n");
        Assert.Equal(new[] { "ready", "login:" }, _pwsh.Run("Get-KvmConsoleLog c1 -Tail 2").Objects<string>());
    }

    [Fact]
    public void Connect_refuses_a_vm_that_is_off()
    {
        NewVm("c2");
        Assert.Equal("InvalidVmState", _pwsh.Run("Connect-KvmConsole c2").SingleError.FullyQualifiedErrorId.Split(',')[0]);
    }

    [Fact]
    public void New_KvmDiskImage_creates_raw_and_qcow2_with_backing()
    {
        var image = Assert.Single(_pwsh.Run("New-KvmDiskImage base.raw -SizeBytes 1MB").Objects<KvmDiskImage>());
        var raw = Path.Combine(_pwsh.Store.Root, "base.raw");
        Assert.Equal((DiskFormat.Raw, 1L << 20, raw), (image.Format, image.SizeBytes, image.Path));

        var cow = Assert.Single(_pwsh.Run("New-KvmDiskImage overlay.img -BackingPath base.raw").Objects<KvmDiskImage>());
        Assert.Equal((DiskFormat.Qcow2, 1L << 20, raw), (cow.Format, cow.SizeBytes, cow.BackingPath));

        var exists = _pwsh.Run("New-KvmDiskImage base.raw -SizeBytes 1MB").SingleError;
        Assert.Equal(("DiskImageExists", ErrorCategory.ResourceExists), (exists.FullyQualifiedErrorId.Split(',')[0], exists.CategoryInfo.Category));

        Assert.Empty(_pwsh.Run("New-KvmDiskImage no.raw -SizeBytes 512 -WhatIf").Output);
        Assert.False(File.Exists(Path.Combine(_pwsh.Store.Root, "no.raw")));
    }

    [Fact]
    public void AsJob_runs_in_a_job_whose_output_is_the_vm()
    {
        var result = _pwsh.Run("$job = New-KvmVm j1 -AsJob; $job.PSJobTypeName; $job | Wait-Job | Receive-Job");
        Assert.Empty(result.Errors);
        Assert.Equal("KvmJob", result.Output[0].BaseObject);
        Assert.Equal("j1", Assert.Single(result.Objects<KvmVm>()).Name);
        var failed = _pwsh.Run("New-KvmVm j1 -AsJob | Wait-Job | ForEach-Object { $_.State.ToString(); $_.ChildJobs.Count; $_.Error[0].FullyQualifiedErrorId }");
        Assert.Equal(new object[] { "Failed", 0, "VmAlreadyExists" }, failed.Output.Select(o => o.BaseObject));
    }

    [Fact]
    public void Vm_names_complete_from_the_store()
    {
        NewVm("web-1");
        NewVm("web-2");
        NewVm("db-1");
        var result = _pwsh.Run("$s = 'Get-KvmVm -Name we'; (TabExpansion2 -inputScript $s -cursorColumn $s.Length).CompletionMatches.CompletionText");
        Assert.Equal(new[] { "web-1", "web-2" }, result.Objects<string>());
    }

    [Fact]
    public void Error_mapping_gives_stable_ids()
    {
        Assert.Equal("VmNotFound", KvmErrorMapping.FromException(new KvmPS.Management.Store.VmNotFoundException("a", "/s"), null).ErrorId);
        Assert.Equal("a", KvmErrorMapping.FromException(new KvmPS.Management.Store.VmNotFoundException("a", "/s"), null).Target);
        Assert.Equal("VmStartFailed", KvmErrorMapping.FromException(new VmmLaunchException("a", "x"), "a").ErrorId);
        Assert.Equal("VmFeatureNotSupported", KvmErrorMapping.FromException(new VmFeatureNotSupportedException("a", new[] { "disks" }), "a").ErrorId);
        Assert.Equal("VmmNotFound", KvmErrorMapping.FromException(new VmmBinaryNotFoundException(new[] { "/x" }), null).ErrorId);
        Assert.Equal("UnexpectedError", KvmErrorMapping.FromException(new InvalidOperationException(), null).ErrorId);
    }
}

/// <summary>Reads the session's store directly, to check what a cmdlet stored.</summary>
internal readonly struct VmStoreView(TempStore store)
{
    public bool Exists(string name) => store.Store.Exists(name);
    public VmDefinition Get(string name) => store.Store.Get(name);
}
