using System.Collections;
using KvmPS.Commands;
using KvmPS.Management.Balloon;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.PowerShell.Internal;

namespace KvmPS.PowerShell.Tests;

/// <summary>
/// The cmdlets run without a runspace (<see cref="KvmCmdletBase.InvokeForTest"/>) against a temp store. No VM is
/// started here: running VMs are the management tests' and the Pester tests' business.
/// </summary>
public sealed class CmdletExecutionTests : IDisposable
{
    private readonly TempStore _store = new();

    public void Dispose() => _store.Dispose();

    private RecordingOutput Run(KvmCmdletBase cmdlet, bool confirm = true)
    {
        var output = new RecordingOutput { Confirm = confirm };
        cmdlet.InvokeForTest(output, _store.Manager);
        return output;
    }

    private static T With<T>(T cmdlet, params string[] switches) where T : KvmCmdletBase
    {
        foreach (var name in switches)
            cmdlet.TestSwitches.Add(name);
        return cmdlet;
    }

    private KvmVm NewVm(string name, int cpus = 1)
    {
        var output = Run(new NewKvmVmCommand { Name = name, MemoryStartupBytes = 128L << 20, ProcessorCount = cpus, MaximumProcessorCount = 4 });
        Assert.Empty(output.Errors);
        return Assert.IsType<KvmVm>(Assert.Single(output.Objects));
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
        Assert.True(_store.Store.Exists("web1"));
    }

    [Fact]
    public void New_from_a_definition_hashtable()
    {
        var definition = new Hashtable { ["Name"] = "db", ["MemoryStartupBytes"] = "256MB", ["VcpuCount"] = 2 };
        var output = Run(new NewKvmVmCommand { Definition = definition });
        Assert.Empty(output.Errors);
        var vm = Assert.IsType<KvmVm>(Assert.Single(output.Objects));
        Assert.Equal(256, vm.MemoryMB);
        Assert.Equal(2, vm.ProcessorCount);
    }

    [Fact]
    public void New_with_WhatIf_changes_nothing_and_a_duplicate_is_VmAlreadyExists()
    {
        var whatIf = Run(new NewKvmVmCommand { Name = "x1" }, confirm: false);
        Assert.Empty(whatIf.Objects);
        Assert.False(_store.Store.Exists("x1"));

        NewVm("x1");
        var duplicate = Run(new NewKvmVmCommand { Name = "x1" });
        var error = Assert.Single(duplicate.Errors);
        Assert.Equal("VmAlreadyExists", error.ErrorId);
        Assert.Equal(System.Management.Automation.ErrorCategory.ResourceExists, error.Category);
    }

    [Fact]
    public void Get_lists_all_or_by_wildcard_and_reports_missing_plain_names()
    {
        NewVm("web-1");
        NewVm("web-2");
        NewVm("db-1");
        Assert.Equal(new[] { "db-1", "web-1", "web-2" }, Run(new GetKvmVmCommand()).Objects.Cast<KvmVm>().Select(v => v.Name));
        var output = Run(new GetKvmVmCommand { Name = new[] { "web*", "nosuch", "none*" } });
        Assert.Equal(new[] { "web-1", "web-2" }, output.Objects.Cast<KvmVm>().Select(v => v.Name));
        var error = Assert.Single(output.Errors);
        Assert.Equal(("VmNotFound", System.Management.Automation.ErrorCategory.ObjectNotFound, (object?)"nosuch"), (error.ErrorId, error.Category, error.Target));
    }

    [Fact]
    public void Piped_vms_are_stopped_only_with_confirmation()
    {
        var vms = new[] { NewVm("web-1"), NewVm("web-2") };
        var whatIf = Run(new StopKvmVmCommand { Vm = vms }, confirm: false);
        Assert.Equal(new[] { "web-1", "web-2" }, whatIf.ShouldProcessCalls.Select(c => c.Target));
        Assert.Empty(whatIf.Errors);
        // Stopping an Off VM is a no-op that says so.
        var stop = Run(With(new StopKvmVmCommand { Vm = vms }, "PassThru"));
        Assert.Empty(stop.Errors);
        Assert.All(stop.Objects.Cast<KvmVm>(), v => Assert.Equal(VmState.Off, v.State));
    }

    [Fact]
    public void Errors_for_piped_vms_target_the_piped_object()
    {
        var vm = NewVm("gone");
        _store.Manager.Remove("gone");
        var output = Run(new SuspendKvmVmCommand { Vm = new[] { vm } });
        var error = Assert.Single(output.Errors);
        Assert.Equal("VmNotFound", error.ErrorId);

        NewVm("off");
        var suspend = Run(new SuspendKvmVmCommand { Name = new[] { "off" } });
        var stateError = Assert.Single(suspend.Errors);
        Assert.Equal(("InvalidVmState", System.Management.Automation.ErrorCategory.InvalidOperation), (stateError.ErrorId, stateError.Category));
        Assert.Equal("off", stateError.Target);
    }

    [Fact]
    public void Set_KvmVcpu_updates_the_definition_and_validates_against_the_maximum()
    {
        NewVm("web1");
        var output = Run(With(new SetKvmVcpuCommand { Name = new[] { "web1" }, Count = 3 }, "PassThru"));
        Assert.Empty(output.Errors);
        Assert.Empty(output.Warnings); // the VM is off: stored, no restart needed
        Assert.Equal(3, Assert.IsType<KvmVm>(Assert.Single(output.Objects)).ProcessorCount);

        var tooMany = Run(new SetKvmVcpuCommand { Name = new[] { "web1" }, Count = 8 });
        var error = Assert.Single(tooMany.Errors);
        Assert.Equal(("InvalidVmSetting", System.Management.Automation.ErrorCategory.InvalidArgument), (error.ErrorId, error.Category));
        Assert.Equal(3, _store.Store.Get("web1").Vcpus.Count);

        Run(new SetKvmVcpuCommand { Name = new[] { "web1" }, Count = 8, Maximum = 8 });
        Assert.Equal(new VcpuSettings(8, 8), _store.Store.Get("web1").Vcpus);
    }

    [Fact]
    public void Invoke_KvmBalloon_reports_and_sets_the_memory_target()
    {
        Run(With(new NewKvmVmCommand { Name = "b1", MemoryStartupBytes = 256L << 20, MemoryMinimumBytes = 128L << 20, MemoryMaximumBytes = 512L << 20 }, "BalloonEnabled"));
        var report = Assert.IsType<VmMemoryStatus>(Assert.Single(Run(new InvokeKvmBalloonCommand { Name = new[] { "b1" } }).Objects));
        Assert.Equal((256L << 20, 128L << 20, 512L << 20, true), (report.TargetBytes, report.MinimumBytes, report.MaximumBytes, report.BalloonEnabled));
        Assert.Null(report.CurrentBytes);

        var set = Run(new InvokeKvmBalloonCommand { Name = new[] { "b1" }, TargetBytes = 192L << 20 });
        Assert.Equal(192L << 20, Assert.IsType<VmMemoryStatus>(Assert.Single(set.Objects)).TargetBytes);

        var outside = Run(new InvokeKvmBalloonCommand { Name = new[] { "b1" }, TargetBytes = 1L << 30 });
        Assert.Equal("InvalidVmSetting", Assert.Single(outside.Errors).ErrorId);
    }

    [Fact]
    public void Set_KvmVm_keeps_fixed_memory_fixed_and_widens_a_range()
    {
        NewVm("s1");
        Run(new SetKvmVmCommand { Name = new[] { "s1" }, MemoryStartupBytes = 256L << 20, Notes = "hello", Autostart = true });
        var d = _store.Store.Get("s1");
        Assert.Equal(MemorySettings.Fixed(256L << 20), d.Memory);
        Assert.Equal("hello", d.Notes);
        Assert.True(d.Autostart);
        Run(new SetKvmVmCommand { Name = new[] { "s1" }, MemoryMaximumBytes = 1L << 30 });
        Assert.Equal(new MemorySettings(256L << 20, 256L << 20, 1L << 30), _store.Store.Get("s1").Memory);
    }

    [Fact]
    public void Disks_are_created_attached_and_detached()
    {
        NewVm("d1");
        var add = Run(With(new AddKvmDiskCommand { Name = new[] { "d1" }, Path = "data.qcow2", SizeBytes = 64L << 20 }, "PassThru"));
        Assert.Empty(add.Errors);
        var disk = Assert.Single(Assert.IsType<KvmVm>(Assert.Single(add.Objects)).Disks);
        Assert.Equal(("data.qcow2", DiskFormat.Qcow2), (disk.Path, disk.Format));
        Assert.True(File.Exists(Path.Combine(_store.Store.DiskDirectory("d1"), "data.qcow2")));

        var missing = Run(new AddKvmDiskCommand { Name = new[] { "d1" }, Path = "/nonexistent/x.raw" });
        Assert.Equal("DiskImageNotFound", Assert.Single(missing.Errors).ErrorId);

        Run(new RemoveKvmDiskCommand { Name = new[] { "d1" }, Path = "data.qcow2" });
        Assert.Empty(_store.Store.Get("d1").Disks);
        Assert.True(File.Exists(Path.Combine(_store.Store.DiskDirectory("d1"), "data.qcow2")), "the image is kept");
        Assert.Equal("DeviceNotFound", Assert.Single(Run(new RemoveKvmDiskCommand { Name = new[] { "d1" }, Path = "data.qcow2" }).Errors).ErrorId);
    }

    [Fact]
    public void Network_adapters_get_stable_distinct_macs()
    {
        NewVm("n1");
        Run(new AddKvmNetworkAdapterCommand { Name = new[] { "n1" }, BridgeName = "br0" });
        Run(new AddKvmNetworkAdapterCommand { Name = new[] { "n1" }, TapName = "tap7", MacAddress = "52:54:00:aa:bb:cc" });
        var adapters = _store.Store.Get("n1").NetworkAdapters;
        Assert.Equal(2, adapters.Count);
        Assert.Equal(MacAddress.GenerateLocallyAdministered("n1/0"), adapters[0].MacAddress);
        Assert.Equal("br0", adapters[0].BridgeName);

        Run(new RemoveKvmNetworkAdapterCommand { Name = new[] { "n1" }, MacAddress = new[] { "52-54-00-AA-BB-CC" } });
        Assert.Single(_store.Store.Get("n1").NetworkAdapters);

        var neither = Run(new AddKvmNetworkAdapterCommand { Name = new[] { "n1" } });
        Assert.Equal("InvalidValue", Assert.Single(neither.Errors).ErrorId);
    }

    [Fact]
    public void Pci_passthrough_refuses_devices_this_host_lacks_and_stores_usable_ones()
    {
        NewVm("p1");
        var sysfs = Path.Combine(_store.Root, "sysfs");
        Directory.CreateDirectory(sysfs);
        var missing = Run(new AddKvmPciPassthroughCommand { Name = new[] { "p1" }, Address = new[] { "0000:03:00.0" }, HostDevices = new(sysfs) });
        var error = Assert.Single(missing.Errors);
        Assert.Equal("PciDeviceUnusable", error.ErrorId);
        Assert.Contains("0000:03:00.0", error.Exception.Message);
        Assert.Empty(_store.Store.Get("p1").PciPassthrough); // nothing changed

        // A NIC alone in IOMMU group 4, still bound to its host driver: stored, with a warning to bind vfio-pci.
        var real = Path.Combine(sysfs, "devices", "pci0000:00", "0000:03:00.0");
        Directory.CreateDirectory(real);
        File.WriteAllText(Path.Combine(real, "vendor"), "0x8086\n");
        File.WriteAllText(Path.Combine(real, "device"), "0x1533\n");
        File.WriteAllText(Path.Combine(real, "class"), "0x020000\n");
        Directory.CreateDirectory(Path.Combine(sysfs, "bus", "pci", "drivers", "igb"));
        File.CreateSymbolicLink(Path.Combine(real, "driver"), "../../../bus/pci/drivers/igb");
        var group = Path.Combine(sysfs, "kernel", "iommu_groups", "4", "devices");
        Directory.CreateDirectory(group);
        File.CreateSymbolicLink(Path.Combine(group, "0000:03:00.0"), real);
        File.CreateSymbolicLink(Path.Combine(real, "iommu_group"), "../../../kernel/iommu_groups/4");
        Directory.CreateDirectory(Path.Combine(sysfs, "bus", "pci", "devices"));
        File.CreateSymbolicLink(Path.Combine(sysfs, "bus", "pci", "devices", "0000:03:00.0"), "../../../devices/pci0000:00/0000:03:00.0");

        var output = Run(new AddKvmPciPassthroughCommand { Name = new[] { "p1" }, Address = new[] { "0000:03:00.0" }, HostDevices = new(sysfs) });
        Assert.Empty(output.Errors);
        Assert.Contains(output.Warnings, w => w.Contains("0000:03:00.0") && w.Contains("vfio-pci"));
        Assert.Equal(new[] { PciAddress.Parse("0000:03:00.0") }, _store.Store.Get("p1").PciPassthrough);

        var again = Run(new AddKvmPciPassthroughCommand { Name = new[] { "p1" }, Address = new[] { "0000:03:00.0" }, HostDevices = new(sysfs) });
        Assert.Equal("DeviceAlreadyAttached", Assert.Single(again.Errors).ErrorId);
        var bad = Run(new AddKvmPciPassthroughCommand { Name = new[] { "p1" }, Address = new[] { "3:00.0" }, HostDevices = new(sysfs) });
        Assert.Equal("InvalidValue", Assert.Single(bad.Errors).ErrorId);

        Run(new RemoveKvmPciPassthroughCommand { Name = new[] { "p1" }, Address = new[] { "0000:03:00.0" } });
        Assert.Empty(_store.Store.Get("p1").PciPassthrough);
    }

    [Fact]
    public void Remove_asks_and_deletes()
    {
        NewVm("r1");
        var declined = Run(new RemoveKvmVmCommand { Name = new[] { "r1" } }, confirm: false);
        Assert.Single(declined.ShouldProcessCalls);
        Assert.True(_store.Store.Exists("r1"));
        Run(new RemoveKvmVmCommand { Name = new[] { "r*" } });
        Assert.False(_store.Store.Exists("r1"));
    }

    [Fact]
    public void Console_log_tail()
    {
        NewVm("c1");
        File.WriteAllText(_store.Store.SerialLogPath("c1"), "boot\nready\nlogin:\n");
        Assert.Equal(new object[] { "ready", "login:" }, Run(new GetKvmConsoleLogCommand { Name = new[] { "c1" }, Tail = 2 }).Objects);
    }

    [Fact]
    public void Connect_refuses_a_vm_that_is_off()
    {
        NewVm("c2");
        var error = Assert.Single(Run(new ConnectKvmConsoleCommand { Name = new[] { "c2" } }).Errors);
        Assert.Equal("InvalidVmState", error.ErrorId);
    }

    [Fact]
    public void New_KvmDiskImage_creates_raw_and_qcow2_with_backing()
    {
        var raw = Path.Combine(_store.Root, "base.raw");
        var output = Run(new NewKvmDiskImageCommand { Path = raw, SizeBytes = 1L << 20 });
        var image = Assert.IsType<KvmDiskImage>(Assert.Single(output.Objects));
        Assert.Equal((DiskFormat.Raw, 1L << 20), (image.Format, image.SizeBytes));

        var overlay = Path.Combine(_store.Root, "overlay.img");
        var cow = Assert.IsType<KvmDiskImage>(Assert.Single(Run(new NewKvmDiskImageCommand { Path = overlay, BackingPath = raw }).Objects));
        Assert.Equal((DiskFormat.Qcow2, 1L << 20, raw), (cow.Format, cow.SizeBytes, cow.BackingPath));

        var exists = Run(new NewKvmDiskImageCommand { Path = raw, SizeBytes = 1L << 20 });
        Assert.Equal(("DiskImageExists", System.Management.Automation.ErrorCategory.ResourceExists), (Assert.Single(exists.Errors).ErrorId, exists.Errors[0].Category));

        var whatIf = Run(new NewKvmDiskImageCommand { Path = Path.Combine(_store.Root, "no.raw"), SizeBytes = 512 }, confirm: false);
        Assert.Empty(whatIf.Objects);
        Assert.False(File.Exists(Path.Combine(_store.Root, "no.raw")));
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
