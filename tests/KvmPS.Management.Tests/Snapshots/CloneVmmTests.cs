using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Tests.TestSupport;
using static KvmPS.Management.Tests.TestSupport.WorkloadLog;

namespace KvmPS.Management.Tests.Snapshots;

/// <summary>
/// A clone (Import-KvmVm -Copy -GenerateNewId) of a saved VM with a network adapter, on the real kvmps-vmm: it
/// starts from the saved state with its new MAC. The VMM's tap lives in a network namespace of the test's own
/// (<see cref="NetworkNamespace"/>).
/// </summary>
[Collection(VmmCollection.Name)]
public sealed class CloneVmmTests(VmmFixture fixture)
{
    [NetNsFact]
    public void A_clone_with_new_ids_starts_from_its_saved_state_with_its_new_MAC()
    {
        using var ns = new NetworkNamespace("kvt-clone");
        using var sandbox = new LifecycleSandbox(fixture);
        var manager = sandbox.Manager;
        var serial = () => sandbox.Serial("cl");
        ns.Enter(() =>
        {
            var oldMac = MacAddress.Parse("52:54:00:00:00:31");
            manager.New(sandbox.GuestWithCmdline("cl", WorkloadLog.Cmdline) with
            {
                NetworkAdapters = new[] { new NetworkAdapterDefinition("kvtcl0", null, oldMac) },
            });
            manager.Start("cl");
            LifecycleSandbox.WaitFor(() => manager.Get("cl"), _ => Counts(serial()).Count >= 5, "five counts", 60);
            Assert.Equal(VmState.Saved, manager.Save("cl").State);
            var countsBefore = Counts(serial());

            var export = manager.Export("cl", Path.Combine(sandbox.Root, "export"));
            manager.Remove("cl");
            var clone = manager.Import(export.Path, copy: true, generateNewId: true);
            var newMac = clone.Definition.NetworkAdapters[0].MacAddress;
            Assert.NotEqual(oldMac, newMac);
            Assert.Equal(VmState.Saved, clone.State);
            var savedConfig = File.ReadAllText(Path.Combine(manager.GetSavedState("cl")!.VmmDirectory, "config.json"));
            Assert.Contains(newMac.ToString(), savedConfig);

            // Before the VMM took the MAC from config.json, this start failed: "the snapshot's MAC is 52:54:00:00:00:31".
            Assert.Equal(VmState.Running, manager.Start("cl").State);
            LifecycleSandbox.WaitFor(() => manager.Get("cl"), _ => Counts(serial()).Count >= countsBefore.Count + 5, "the clone counting on", 60);
            Assert.DoesNotContain("FAILED", serial());
            manager.Stop("cl", force: true);
        });
    }
}

/// <summary>A fact that needs root, iproute2's <c>ip</c> and /dev/net/tun (a network namespace with a tap); skipped with the reason otherwise.</summary>
public sealed class NetNsFactAttribute : FactAttribute
{
    public NetNsFactAttribute()
    {
        if (Environment.UserName != "root")
            Skip = "not root (network namespaces and taps need CAP_NET_ADMIN)";
        else if (!File.Exists("/dev/net/tun"))
            Skip = "no /dev/net/tun";
        else if (!new[] { "/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip" }.Any(File.Exists))
            Skip = "no 'ip' (apt-get install -y iproute2)";
    }
}
