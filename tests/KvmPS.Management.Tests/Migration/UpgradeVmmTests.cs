using System.Text.RegularExpressions;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Tests.TestSupport;
using static KvmPS.Management.Tests.TestSupport.WorkloadLog;
using KvmPS.Management.Vmm;
using KvmPS.Management.Tests.Snapshots;

namespace KvmPS.Management.Tests.Migration;

/// <summary>
/// Local live upgrade on the real kvmps-vmm (<see cref="VmManager.Upgrade"/>): the built-in guest's "work" workload (a
/// memory pattern re-checked all the time, "work: count N" on the console) moves into a new VMM process and counts on
/// with no gap and no reboot; a new VMM that refuses leaves the old one running and the store as it was.
/// </summary>
[Collection(VmmCollection.Name)]
public sealed class UpgradeVmmTests : IDisposable
{
    private readonly LifecycleSandbox _sandbox;
    private readonly VmManager _manager;

    public UpgradeVmmTests(VmmFixture fixture)
    {
        _sandbox = new LifecycleSandbox(fixture);
        _manager = _sandbox.Manager;
    }

    public void Dispose() => _sandbox.Dispose();

    private string Serial(string name) => _sandbox.Serial(name);

    private void WaitForCount(string name, long atLeast) => _sandbox.WaitForCount(name, atLeast);

    /// <summary>1, 2, 3, ... on the one console both VMMs appended to: no gap, no restart, no failed verify, one boot.</summary>
    private void AssertGuestRanOn(string name)
    {
        var all = Counts(Serial(name));
        Assert.Equal(Enumerable.Range((int)all[0], all.Count).Select(i => (long)i), all);
        Assert.DoesNotContain("FAILED", Serial(name));
        Assert.Equal(1, Regex.Matches(Serial(name), "KvmPS built-in guest").Count);
    }

    private void StartWorkload(string name)
    {
        _manager.New(_sandbox.GuestWithCmdline(name, WorkloadLog.Cmdline));
        _manager.Start(name);
        WaitForCount(name, 3);
    }

    [Fact]
    public void Upgrade_moves_the_running_guest_into_a_new_VMM_that_the_store_then_names()
    {
        StartWorkload("up");
        var oldPid = _manager.Get("up").Pid!.Value;

        var result = _manager.Upgrade("up");

        Assert.Equal(oldPid, result.OldPid);
        Assert.NotEqual(oldPid, result.NewPid);
        Assert.True(result.MemoryShared, "a VM management started runs on memfds, so its RAM is passed, not copied");
        Assert.Equal(VmState.Running, result.Vm.State);
        Assert.Equal(result.NewPid, result.Vm.Pid);
        Assert.Equal(result.NewPid.ToString(), File.ReadAllText(_sandbox.Store.PidPath("up")).Trim());
        Assert.Equal([result.NewPid], _sandbox.VmmProcesses());
        Assert.False(File.Exists(Path.Combine(_sandbox.Store.VmDirectory("up"), VmManager.IncomingSocketFileName)));
        var info = _manager.Get("up");
        Assert.Equal(VmState.Running, info.State);
        Assert.Equal(result.NewPid, info.Pid);
        // Management connected the new VMM's socket and passed the connection (docs/vmm.md "Passing open files"): the
        // old VMM, jailed as management starts it, did not have to reach the path.
        Assert.Contains("over the connection passed with the request", File.ReadAllText(_sandbox.Store.VmmLogPath("up")));

        var before = Counts(Serial("up"))[^1];
        WaitForCount("up", before + 3);
        AssertGuestRanOn("up");

        // The new VMM kept the memfds: it can be upgraded the same way again, and stopped as any VM.
        var again = _manager.Upgrade("up");
        Assert.Equal(result.NewPid, again.OldPid);
        Assert.True(again.MemoryShared);
        WaitForCount("up", Counts(Serial("up"))[^1] + 3);
        AssertGuestRanOn("up");
        Assert.Equal(VmStopOutcome.TurnedOff, _manager.Stop("up", force: true).Outcome);
        Assert.Empty(_sandbox.VmmProcesses());
        Assert.Equal(VmState.Off, _manager.Get("up").State);
    }

    [Fact]
    public void A_new_VMM_that_refuses_leaves_the_old_one_running_and_the_store_untouched()
    {
        StartWorkload("keep");
        var oldPid = _manager.Get("keep").Pid!.Value;
        var store = _sandbox.Store;
        var pidFile = File.ReadAllText(store.PidPath("keep"));
        var vmmJson = File.ReadAllText(store.VmmConfigPath("keep"));

        // A "new binary" that exits at once with the VMM's usage-error status, as a broken upgrade would.
        var refusing = Path.Combine(_sandbox.Root, "refusing-vmm");
        File.WriteAllText(refusing, "#!/bin/sh\necho 'kvmps-vmm: error: this build refuses to start' >&2\nexit 2\n");
        File.SetUnixFileMode(refusing, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var broken = new VmManager(store, new VmmProcessLauncher(refusing), options: _manager.Options);

        var e = Assert.Throws<VmUpgradeException>(() => broken.Upgrade("keep", TimeSpan.FromSeconds(20)));
        Assert.Equal(oldPid, e.OldPid);
        Assert.Contains("status 2", e.Message);
        Assert.Contains("this build refuses to start", e.Message);
        Assert.Contains($"runs on in its VMM (pid {oldPid})", e.Message);

        Assert.Equal(pidFile, File.ReadAllText(store.PidPath("keep")));
        Assert.Equal(vmmJson, File.ReadAllText(store.VmmConfigPath("keep")));
        Assert.Equal([oldPid], _sandbox.VmmProcesses());
        var info = _manager.Get("keep");
        Assert.Equal(VmState.Running, info.State);
        Assert.Equal(oldPid, info.Pid);
        var before = Counts(Serial("keep"))[^1];
        WaitForCount("keep", before + 3);
        AssertGuestRanOn("keep");
    }

    [Fact]
    public void A_paused_or_stopped_VM_is_not_upgraded()
    {
        StartWorkload("idle");
        _manager.Suspend("idle");
        var paused = Assert.Throws<VmStateException>(() => _manager.Upgrade("idle"));
        Assert.Contains("paused; resume it", paused.Message);
        _manager.Stop("idle", force: true);
        var off = Assert.Throws<VmStateException>(() => _manager.Upgrade("idle"));
        Assert.Equal(VmState.Off, off.State);
        Assert.Empty(_sandbox.VmmProcesses());
    }

    [Fact]
    public void A_VM_with_disks_moves_with_its_open_disks_and_the_new_VMM_holds_them()
    {
        // The disks' open files are handed over with the memfds (docs/migration.md, "Local live upgrade"): the new VMM
        // runs the guest on the very same images, locks and all, and the old one leaves no lock behind.
        using var sandbox = new LifecycleSandbox(_sandbox.Fixture, new StorageDiskImageCreator());
        var definition = sandbox.GuestWithCmdline("disks", WorkloadLog.Cmdline) with
        {
            Disks = new[] { new KvmPS.Management.Definitions.DiskDefinition("data.raw", KvmPS.Management.Definitions.DiskFormat.Raw, 1L << 20),
                     new KvmPS.Management.Definitions.DiskDefinition("data.qcow2", KvmPS.Management.Definitions.DiskFormat.Qcow2, 1L << 20) },
        };
        sandbox.Manager.New(definition);
        sandbox.Manager.Start("disks");
        var oldPid = sandbox.Manager.Get("disks").Pid!.Value;
        string raw = sandbox.Store.ResolveDiskPath("disks", "data.raw"), qcow2 = sandbox.Store.ResolveDiskPath("disks", "data.qcow2");
        Assert.True(InUse(raw) && InUse(qcow2), "the running VMM holds its images");

        var result = sandbox.Manager.Upgrade("disks", TimeSpan.FromSeconds(60));

        Assert.Equal(oldPid, result.OldPid);
        Assert.NotEqual(oldPid, result.NewPid);
        Assert.True(result.MemoryShared);
        Assert.Equal(VmState.Running, sandbox.Manager.Get("disks").State);
        Assert.Equal(result.NewPid, sandbox.Manager.Get("disks").Pid);
        Assert.Equal([result.NewPid], sandbox.VmmProcesses());
        Assert.Contains("2 disks handed over", File.ReadAllText(sandbox.Store.VmmLogPath("disks")));
        Assert.True(InUse(raw) && InUse(qcow2), "the new VMM holds the images once the old one is gone");
        Assert.Equal(VmStopOutcome.TurnedOff, sandbox.Manager.Stop("disks", force: true).Outcome);
        Assert.False(InUse(raw) || InUse(qcow2), "no lock is left once the VMM is gone");
    }

    [NetNsFact]
    public void A_VM_with_a_network_adapter_keeps_its_tap_through_the_upgrade()
    {
        // Once refused (the new VMM could not attach to the tap the running one held: EBUSY); now the tap's descriptor is
        // handed over with the memfds: the same interface, and the guest counts on. (Bridges: the VMM checks them in
        // /sys, which shows the host's namespace to a process that only joined this one; the engine's
        // NetVsockHandoverTests upgrade a VM on a bridge under `ip netns exec`.)
        using var ns = new NetworkNamespace("kvt-upg");
        const string tap = "kvtup0";
        ns.Enter(() =>
        {
            _manager.New(_sandbox.GuestWithCmdline("nic", WorkloadLog.Cmdline) with
            {
                NetworkAdapters = new[] { new KvmPS.Management.Definitions.NetworkAdapterDefinition(tap, null, KvmPS.Management.Definitions.MacAddress.Parse("52:54:00:00:00:41")) },
            });
            _manager.Start("nic");
            WaitForCount("nic", 3);
            var oldPid = _manager.Get("nic").Pid!.Value;
            string before = Link(ns, tap);

            var result = _manager.Upgrade("nic", TimeSpan.FromSeconds(60));

            Assert.Equal(oldPid, result.OldPid);
            Assert.NotEqual(oldPid, result.NewPid);
            Assert.Equal(VmState.Running, _manager.Get("nic").State);
            Assert.Equal([result.NewPid], _sandbox.VmmProcesses());
            Assert.Contains("1 taps handed over", File.ReadAllText(_sandbox.Store.VmmLogPath("nic")));
            string after = Link(ns, tap);
            Assert.Equal(before.Split(':')[0], after.Split(':')[0]); // the same interface (ifindex), not one made again
            Assert.Contains("UP", after);
            WaitForCount("nic", Counts(Serial("nic"))[^1] + 3);
            AssertGuestRanOn("nic");
            Assert.Equal(VmStopOutcome.TurnedOff, _manager.Stop("nic", force: true).Outcome);
        });
        Assert.DoesNotContain(tap, ns.Ip("link", "show")); // the VMM made it: gone with the (new) VMM
    }

    private static string Link(NetworkNamespace ns, string name) => ns.Ip("-o", "link", "show", name);

    private static bool InUse(string path)
    {
        try { using var image = KvmPS.Storage.DiskImageFactory.Open(path); return false; }
        catch (KvmPS.Storage.ImageInUseException) { return true; }
    }
}
