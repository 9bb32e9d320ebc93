using System.Diagnostics;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Management.Tests.Snapshots;

/// <summary>
/// A clone (Import-KvmVm -Copy -GenerateNewId) of a saved VM with a network adapter, on the real kvmps-vmm: it
/// starts from the saved state with its new MAC. The VMM's tap lives in a network namespace of the test's own: the
/// test body runs on a thread that joined it (setns), and the VMMs it spawns inherit the thread's namespace.
/// </summary>
[Collection(VmmCollection.Name)]
public sealed partial class CloneVmmTests(VmmFixture fixture)
{
    private const int CLONE_NEWNET = 0x40000000;

    [DllImport("libc", SetLastError = true)]
    private static extern int setns(int fd, int nstype);

    [GeneratedRegex(@"work: count (\d+)")]
    private static partial Regex CountLine();

    private static List<long> Counts(string text) => CountLine().Matches(text).Select(m => long.Parse(m.Groups[1].Value)).ToList();

    private static void Run(string tool, params string[] args)
    {
        using var p = Process.Start(new ProcessStartInfo(tool, args) { RedirectStandardError = true })!;
        var error = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0)
            throw new InvalidOperationException($"{tool} {string.Join(' ', args)}: {error}");
    }

    /// <summary>Runs <paramref name="body"/> on a thread inside network namespace <paramref name="ns"/>.</summary>
    private static void InNetworkNamespace(string ns, Action body)
    {
        ExceptionDispatchInfo? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                using var handle = File.OpenHandle($"/var/run/netns/{ns}");
                if (setns((int)handle.DangerousGetHandle(), CLONE_NEWNET) != 0)
                    throw new InvalidOperationException($"setns({ns}) failed: errno {Marshal.GetLastPInvokeError()}");
                body();
            }
            catch (Exception e)
            {
                failure = ExceptionDispatchInfo.Capture(e);
            }
        });
        thread.Start();
        thread.Join();
        failure?.Throw();
    }

    [NetNsFact]
    public void A_clone_with_new_ids_starts_from_its_saved_state_with_its_new_MAC()
    {
        var ns = "kvt-clone-" + Guid.NewGuid().ToString("N")[..6];
        Run("ip", "netns", "add", ns);
        using var sandbox = new LifecycleSandbox(fixture);
        var manager = sandbox.Manager;
        var serial = () => File.Exists(sandbox.Store.SerialLogPath("cl")) ? File.ReadAllText(sandbox.Store.SerialLogPath("cl")) : "";
        try
        {
            InNetworkNamespace(ns, () =>
            {
                var oldMac = MacAddress.Parse("52:54:00:00:00:31");
                manager.New(sandbox.GuestWithCmdline("cl", "kvmps.run=work 4") with
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
        finally
        {
            try { Run("ip", "netns", "delete", ns); } catch (InvalidOperationException) { }
        }
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
