using System.Diagnostics;
using KvmPS.Interop;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Store;
using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Management.Tests.Lifecycle;

/// <summary>
/// A VMM that has exited but was never reaped (a zombie, as under a PID 1 that does not reap) counts as exited.
/// The "VMM" here is a real child process of the test that carries a VMM's command line and that the test
/// deliberately does not reap until the end.
/// </summary>
public sealed class ZombieVmmTests : IDisposable
{
    private readonly TempDirectory _root = new();
    private readonly List<int> _children = new();

    public void Dispose()
    {
        foreach (var pid in _children)
        {
            ProcessInterop.Kill(pid, ProcessInterop.SIGKILL);
            ProcessInterop.WaitPid(pid, out _, 0);
        }
        _root.Dispose();
    }

    /// <summary>Starts <c>sh -c 'sleep S; exit 0' kvmps-vmm --control-socket SOCKET</c>: alive for S seconds, then a zombie.</summary>
    private int SpawnFakeVmm(string socketPath, double seconds)
    {
        var pid = ProcessInterop.SpawnDetached("/bin/sh",
            // "; exit 0" keeps sh from exec'ing sleep, which would replace the command line being tested.
            new[] { "sh", "-c", $"sleep {seconds.ToString(System.Globalization.CultureInfo.InvariantCulture)}; exit 0", "kvmps-vmm", "--control-socket", socketPath },
            new[] { "PATH=/usr/bin:/bin" }, Path.Combine(_root.Path, "child.log"));
        _children.Add(pid);
        return pid;
    }

    private static bool Eventually(Func<bool> condition)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > TimeSpan.FromSeconds(2))
                return false;
            Thread.Sleep(10);
        }
        return true;
    }

    private static void WaitForZombie(int pid)
    {
        var clock = Stopwatch.StartNew();
        while (!File.ReadAllText($"/proc/{pid}/stat").Split(')')[^1].TrimStart().StartsWith('Z'))
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"process {pid} did not exit");
            Thread.Sleep(20);
        }
    }

    [Fact]
    public void A_zombie_is_not_running()
    {
        var socket = Path.Combine(_root.Path, "s.sock");
        var pid = SpawnFakeVmm(socket, 3);
        Assert.True(ProcessInterop.IsRunning(pid));
        Assert.True(Eventually(() => VmRuntimeProbe.IsVmmProcess(pid, socket)), "the live fake VMM must count as running");

        WaitForZombie(pid);
        Assert.True(Directory.Exists($"/proc/{pid}"), "the zombie must still have its /proc entry for this test to mean anything");
        Assert.False(ProcessInterop.IsRunning(pid));
        Assert.False(VmRuntimeProbe.IsVmmProcess(pid, socket));
        Assert.True(VmRuntimeProbe.WaitForExit(pid, socket, TimeSpan.FromMilliseconds(100)));
        Assert.False(ProcessInterop.IsRunning(-1));
        Assert.False(ProcessInterop.IsRunning(int.MaxValue));
    }

    [Fact]
    public void A_vm_whose_vmm_is_a_zombie_is_not_starting_or_running()
    {
        var store = VmStore.Open(_root.Path);
        var manager = new VmManager(store);
        manager.New(TestDefinitions.Minimal("z1"));
        var socket = store.SocketPath("z1");
        var pid = SpawnFakeVmm(socket, 3);
        File.WriteAllText(store.PidPath("z1"), pid.ToString());
        File.WriteAllText(store.SocketLockPath("z1"), "");

        Assert.True(Eventually(() => manager.Get("z1").State == VmState.Starting), "while alive, the VM is starting");

        WaitForZombie(pid);
        // The socket's lock file is left behind and the process exited without its clean-exit path: crashed.
        var info = manager.Get("z1");
        Assert.Equal(VmState.Crashed, info.State);
        Assert.Contains($"{pid}", info.StateReason);

        // Stop treats the zombie as gone: it clears the leftovers instead of waiting or killing.
        var stop = manager.Stop("z1", TimeSpan.FromSeconds(1));
        Assert.False(stop.Killed);
        Assert.Equal(VmState.Off, manager.Get("z1").State);
        Assert.False(File.Exists(store.PidPath("z1")));
    }
}
