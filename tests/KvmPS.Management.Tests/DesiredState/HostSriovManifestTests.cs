using KvmPS.Management.Definitions;
using KvmPS.Management.DesiredState;
using KvmPS.Management.HostDevices;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Store;
using KvmPS.Management.Tests.HostDevices;
using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Management.Tests.DesiredState;

/// <summary>
/// A manifest's HostSriov VF counts: the reader's errors, the plan (step order, drift, what it refuses), apply through
/// HostSriov.SetVfCount, get and export; against the fake sysfs, whose fake kernel creates and removes the VFs.
/// </summary>
public sealed class HostSriovManifestTests : IDisposable
{
    private const string Pf = "0000:03:00.0", Plain = "0000:00:1f.0";
    private readonly TempDirectory _temp = new();
    private readonly FakeSysfs _sysfs = new();

    public HostSriovManifestTests()
    {
        _sysfs.AddDriver("vfio-pci");
        _sysfs.AddDevice(Pf, "ixgbe", iommuGroup: 7, totalVfs: 8);
        _sysfs.AddNetworkInterface(Pf, "enp3s0f0", "up");
        _sysfs.AddDevice(Plain, "lpc_ich", iommuGroup: 3, classCode: 0x060100);
    }

    public void Dispose()
    {
        _sysfs.Dispose();
        _temp.Dispose();
    }

    private HostSriov Sriov => new(_sysfs.Host, _sysfs.Kernel);

    private VmManager Manager()
    {
        var root = Path.Combine(_temp.Path, "store");
        return new VmManager(VmStore.Open(root, allowedPaths: AllowedPaths.StoreOnly(root)), diskImageCreator: new StorageDiskImageCreator());
    }

    private Reconciler Open(VmManager? manager = null) => new(manager ?? Manager(), new FakeNetworks(), Sriov);

    private static DesiredHostState Parse(string text) => DesiredStateReader.Parse(text, "m.psd1");

    private static string Steps(ReconcilePlan plan) => string.Join(" ", plan.Actions.Select(a => $"{a.Kind}:{a.VmName}"));

    [Fact]
    public void TheReaderTakesCountsPerPhysicalFunctionAndAManifestOfOnlyThem()
    {
        var desired = Parse($"@{{ HostSriov = @{{ '{Pf}' = 4; '0000:81:00.1' = 0 }} }}");

        Assert.Empty(desired.Vms);
        Assert.Equal([(PciAddress.Parse(Pf), 4), (PciAddress.Parse("0000:81:00.1"), 0)], desired.HostSriov.Select(s => (s.PhysicalFunction, s.VfCount)));
        Assert.Equal(1, desired.HostSriov[0].Position.Line);
    }

    [Theory]
    [InlineData("HostSriov = @( '0000:03:00.0' )", "HostSriov", "must be a hashtable of physical functions and VF counts")]
    [InlineData("HostSriov = @{ '03:00.0' = 4 }", "HostSriov['03:00.0']", "DDDD:BB:DD.F")]
    [InlineData("HostSriov = @{ '0000:03:00.0' = -1 }", "HostSriov['0000:03:00.0']", "a whole number from 0 to 65535, not the number -1")]
    [InlineData("HostSriov = @{ '0000:03:00.0' = '4' }", "HostSriov['0000:03:00.0']", "not the string '4'")]
    [InlineData("HostSriov = @{ '0000:03:00.0' = 2.5 }", "HostSriov['0000:03:00.0']", "whole number")]
    [InlineData("HostSriov = @{ '0000:03:00.0' = 4 }; HostSriv = 1", "HostSriv", "unknown key 'HostSriv'")]
    public void BadEntriesAreRefusedNamingTheKeyAndPosition(string body, string property, string reason)
    {
        var e = Assert.Throws<DesiredStateException>(() => Parse("@{\n  " + body + "\n}"));
        Assert.Equal(property, e.Property);
        Assert.Contains(reason, e.Reason);
        Assert.Equal(2, e.Line);
    }

    [Fact]
    public void AFunctionDeclaredInTwoFilesIsRefused()
    {
        var a = Path.Combine(_temp.Path, "a.psd1");
        var b = Path.Combine(_temp.Path, "b.psd1");
        File.WriteAllText(a, $"@{{ HostSriov = @{{ '{Pf}' = 4 }} }}");
        File.WriteAllText(b, "@{ HostSriov = @{ '0000:03:00.0' = 2 } }");

        var e = Assert.Throws<DesiredStateException>(() => DesiredStateReader.ReadFiles([a, b]));

        Assert.Contains("declared twice (first at", e.Reason);
        Assert.Equal(b, e.File);
    }

    [Fact]
    public void ApplySetsTheCountBeforeCreatingVmsAndASecondApplyDoesNothing()
    {
        var desired = Parse($$"""
            @{
              HostSriov = @{ '{{Pf}}' = 4 }
              VirtualMachines = @( @{ Name = 'web1'; MemoryStartupBytes = 64MB } )
            }
            """);
        var reconciler = Open();

        var plan = reconciler.Plan(desired);
        Assert.Equal($"SetSriovVfCount:{Pf} Create:web1", Steps(plan));
        Assert.Equal($"Set the VF count of {Pf} (enp3s0f0) to 4 (now 0)", plan.Actions[0].Description);
        Assert.Contains(new Drift($"HostSriov.{Pf}", "VfCount", "4", "0"), plan.Drifts);
        Assert.Equal($"Set SR-IOV VF count (VfCount 0 -> 4)", plan.Actions[0].Verb());
        Assert.False(reconciler.Get(desired).InDesiredState);

        var result = reconciler.Set(desired);

        Assert.True(result.Succeeded, result.Failure?.Message);
        Assert.Equal($"Physical function {Pf} has 4 VFs", result.Results[0].Message);
        Assert.Equal(4, _sysfs.Host.TryRead(PciAddress.Parse(Pf))!.SriovNumVfs);
        Assert.Equal(4, Sriov.VirtualFunctions(PciAddress.Parse(Pf)).Count);
        Assert.Empty(reconciler.Test(desired));
        Assert.True(reconciler.Plan(desired).IsEmpty);
        var status = Assert.Single(reconciler.Get(desired).HostSriov);
        Assert.True(status.InDesiredState);
        Assert.Equal(4, status.Actual!.SriovNumVfs);

        // Lowering the count goes through 0, as the kernel wants.
        _sysfs.Kernel.Writes.Clear();
        Assert.True(reconciler.Set(Parse($"@{{ HostSriov = @{{ '{Pf}' = 2 }} }}")).Succeeded);
        Assert.Equal(["0", "2"], _sysfs.Kernel.Writes.Select(w => w.Value));
    }

    [Fact]
    public void TheStepsComeAfterTheVmsThePlanStopsAndBeforeTheOnesItChanges()
    {
        var running = TestDefinitions.Minimal("old");
        var desired = Parse($$"""
            @{
              HostSriov = @{ '{{Pf}}' = 2 }
              VirtualMachines = @( @{ Name = 'old'; Ensure = 'Absent' }; @{ Name = 'new'; MemoryStartupBytes = 64MB } )
            }
            """);

        var vmPlan = ReconcilePlanner.Plan(desired, new Dictionary<string, ActualVm> { ["old"] = new("old", running, VmState.Running, IsActive: true) });

        Assert.Equal("Stop:old Remove:old Create:new", Steps(vmPlan));
        Assert.Equal(2, vmPlan.StopStepCount);

        // Through the reconciler (the store's VMs are never running here): the VF count sits between the two phases.
        var manager = Manager();
        manager.New(running);
        Assert.Equal($"Remove:old SetSriovVfCount:{Pf} Create:new", Steps(Open(manager).Plan(desired)));
    }

    [Theory]
    [InlineData("0000:09:00.0", 1, "this host has no such device")]
    [InlineData(Plain, 1, "not SR-IOV capable")]
    [InlineData(Pf, 9, "supports at most 8")]
    public void WhatNoStepCanFixIsRefusedInThePlanNamingTheEntry(string pf, int count, string reason)
    {
        var e = Assert.Throws<DesiredStateException>(() => Open().Plan(Parse($"@{{\n HostSriov = @{{ '{pf}' = {count} }} }}")));

        Assert.Equal($"HostSriov['{pf}']", e.Property);
        Assert.Contains(reason, e.Message);
        Assert.Equal(2, e.Line);
        Assert.Empty(_sysfs.Kernel.Writes);
    }

    [Fact]
    public void AVfBoundForAVmIsAWarningInThePlanAndTheStepFailsNamingIt()
    {
        Sriov.SetVfCount(PciAddress.Parse(Pf), 4);
        var vf = Sriov.VirtualFunctions(PciAddress.Parse(Pf))[1].Address;
        new PciDriverBinding(_sysfs.Host, _sysfs.Kernel).Bind(vf);
        var desired = Parse($"@{{ HostSriov = @{{ '{Pf}' = 2 }} }}");
        var reconciler = Open();

        var plan = reconciler.Plan(desired);
        Assert.Contains(plan.Warnings, w => w.Contains($"VF 1 ({vf}) is bound to vfio-pci"));

        var result = reconciler.Set(desired);
        Assert.False(result.Succeeded);
        Assert.IsType<HostSriovException>(result.Failure!.Error);
        Assert.Contains($"{vf} (VF 1) is bound to vfio-pci", result.Failure.Message);
        Assert.Equal(4, _sysfs.Host.TryRead(PciAddress.Parse(Pf))!.SriovNumVfs);
    }

    [Fact]
    public void GetReportsAMissingDeviceAsDriftWithoutThrowing()
    {
        var status = Assert.Single(Open().Get(Parse("@{ HostSriov = @{ '0000:09:00.0' = 2 } }")).HostSriov);

        Assert.Null(status.Actual);
        Assert.Equal(new Drift("HostSriov.0000:09:00.0", "VfCount", "2", "(no such device)"), Assert.Single(status.Drifts));
    }

    [Fact]
    public void ExportStatesTheVfCountOfThePfsWhoseVfsTheVmsUseAndItReadsBack()
    {
        Sriov.SetVfCount(PciAddress.Parse(Pf), 3);
        var vf = Sriov.VirtualFunctions(PciAddress.Parse(Pf))[2].Address;
        var manager = Manager();
        manager.New(TestDefinitions.Minimal("nic") with
        {
            NetworkAdapters = new([new NetworkAdapterDefinition(null, null, MacAddress.Parse("52:54:00:00:00:07"), SriovVf: vf, VlanId: 12)]),
        });
        manager.New(TestDefinitions.Minimal("plain"));

        var export = ManifestExporter.Export(manager, ["nic"], new FakeNetworks(), _sysfs.Host);

        Assert.Contains($"    HostSriov = @{{\n        '{Pf}' = 3\n    }}\n", export.Text);
        var read = DesiredStateReader.Parse(export.Text, "export.psd1");
        Assert.Equal((PciAddress.Parse(Pf), 3), (read.HostSriov.Single().PhysicalFunction, read.HostSriov.Single().VfCount));
        Assert.Empty(Open(manager).Test(read));
        Assert.DoesNotContain("HostSriov", ManifestExporter.Export(manager, ["plain"], new FakeNetworks(), _sysfs.Host).Text);
    }
}
