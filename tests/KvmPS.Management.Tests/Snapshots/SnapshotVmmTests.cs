using KvmPS.Management.Lifecycle;
using KvmPS.Management.Snapshots;
using KvmPS.Management.Tests.TestSupport;
using static KvmPS.Management.Tests.TestSupport.WorkloadLog;

namespace KvmPS.Management.Tests.Snapshots;

/// <summary>
/// Checkpoints and saved state of running VMs on the real kvmps-vmm, with the built-in guest's "work" workload (a
/// memory pattern verified all the time, "work: count N" on the console): the counter must go on from where the
/// state was taken, with no restart and no failed verify.
/// </summary>
[Collection(VmmCollection.Name)]
public sealed partial class SnapshotVmmTests : IDisposable
{
    private readonly LifecycleSandbox _sandbox;
    private readonly VmManager _manager;

    public SnapshotVmmTests(VmmFixture fixture)
    {
        _sandbox = new LifecycleSandbox(fixture);
        _manager = _sandbox.Manager;
    }

    public void Dispose() => _sandbox.Dispose();

    private string Serial(string name) => _sandbox.Serial(name);

    private void WaitForCount(string name, long atLeast) => _sandbox.WaitForCount(name, atLeast);

    /// <summary>
    /// The highest count the restored guest may show first: the one after the last shown when the checkpoint returned,
    /// or the one after that when the checkpoint cut a line (the rest of that line is not a whole line).
    /// </summary>
    private long LastCountBack(string serialAfterCheckpoint) =>
        Counts(serialAfterCheckpoint)[^1] + (WorkloadLog.EndsInsideALine(serialAfterCheckpoint) ? 2 : 1);

    private void StartWorkload(string name)
    {
        _manager.New(_sandbox.GuestWithCmdline(name, WorkloadLog.Cmdline));
        _manager.Start(name);
        WaitForCount(name, 5);
    }

    [Fact]
    public void Save_stops_the_VMM_and_start_resumes_the_counter_where_it_stopped()
    {
        StartWorkload("sv");
        var pid = _manager.Get("sv").Pid;
        var saved = _manager.Save("sv");
        Assert.Equal(VmState.Saved, saved.State);
        Assert.Null(saved.Pid);
        Assert.Empty(_sandbox.VmmProcesses());
        Assert.True(File.Exists(Path.Combine(_manager.GetSavedState("sv")!.VmmDirectory, "state.bin")));
        var before = Counts(Serial("sv"));

        var started = _manager.Start("sv");
        Assert.Equal(VmState.Running, started.State);
        Assert.NotEqual(pid, started.Pid);
        Assert.Null(_manager.GetSavedState("sv"));
        WaitForCount("sv", before[^1] + 5);
        var all = Counts(Serial("sv"));
        // One console, appended across both processes: 1, 2, 3, ... with no gap and no restart.
        Assert.Equal(Enumerable.Range((int)all[0], all.Count).Select(i => (long)i), all);
        Assert.DoesNotContain("FAILED", Serial("sv"));
    }

    [Fact]
    public void A_checkpoint_of_a_running_VM_restores_into_a_new_VMM_from_where_it_was()
    {
        StartWorkload("cp");
        var before = Counts(Serial("cp"))[^1];
        var snapshot = _manager.Checkpoint("cp", "mid");
        var lastBack = LastCountBack(Serial("cp"));
        Assert.True(snapshot.IncludesMemory);
        Assert.Equal("Running", snapshot.VmState);
        Assert.True(File.Exists(Path.Combine(snapshot.VmmDirectory, "state.bin")));
        Assert.Equal(VmState.Running, _manager.Get("cp").State);
        WaitForCount("cp", lastBack + 10); // it ran on past the checkpoint

        var mark = Serial("cp").Length;
        var latest = Counts(Serial("cp")[..mark])[^1];
        var pid = _manager.Get("cp").Pid;
        var restored = _manager.RestoreSnapshot("cp", "mid");
        Assert.Equal(VmState.Running, restored.State);
        Assert.NotEqual(pid, restored.Pid);
        // The old VMM may print a few more counts after the mark before it is stopped (latest + 1, ...): the restored
        // guest's first count is the first one that goes back.
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (!Counts(Serial("cp")[mark..]).Any(c => c <= latest))
        {
            Assert.True(DateTime.UtcNow < deadline, "the restored guest printed no count: " + Serial("cp")[mark..]);
            Thread.Sleep(50);
        }
        var first = Counts(Serial("cp")[mark..]).First(c => c <= latest);
        // Back to the checkpoint: the next count follows the one shown when it was taken, not the latest.
        Assert.InRange(first, before + 1, lastBack);
        Assert.DoesNotContain("FAILED", Serial("cp"));
    }

    [Fact]
    public void A_VMM_killed_after_a_checkpoint_is_restored_from_it()
    {
        StartWorkload("kl");
        var before = Counts(Serial("kl"))[^1];
        _manager.Checkpoint("kl", "before-kill");
        var lastBack = LastCountBack(Serial("kl"));
        var pid = _manager.Get("kl").Pid!.Value;
        System.Diagnostics.Process.GetProcessById(pid).Kill();
        LifecycleSandbox.WaitFor(() => _manager.Get("kl"), vm => !vm.IsActive, "the killed VMM to be gone");
        Assert.Equal(VmState.Crashed, _manager.Get("kl").State);

        var mark = Serial("kl").Length;
        Assert.Equal(VmState.Running, _manager.RestoreSnapshot("kl", "before-kill").State);
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (Counts(Serial("kl")[mark..]).Count < 5)
        {
            Assert.True(DateTime.UtcNow < deadline, "the restored guest printed too few counts: " + Serial("kl")[mark..]);
            Thread.Sleep(50);
        }
        var resumed = Counts(Serial("kl")[mark..]);
        Assert.InRange(resumed[0], before + 1, lastBack);
        Assert.Equal(Enumerable.Range((int)resumed[0], resumed.Count).Select(i => (long)i), resumed);
        Assert.DoesNotContain("FAILED", Serial("kl")[mark..]);
    }

    [Fact]
    public void A_paused_VM_is_saved_and_comes_back_paused()
    {
        StartWorkload("pz");
        _manager.Suspend("pz");
        Assert.Equal(VmState.Saved, _manager.Save("pz").State);
        Assert.Equal("Paused", _manager.GetSavedState("pz")!.VmState);
        Assert.Equal(VmState.Paused, _manager.Start("pz").State);
        Assert.Equal(VmState.Running, _manager.Resume("pz").State);
    }

    [Fact]
    public void Checkpoint_and_save_of_a_VM_that_is_not_running_are_state_errors()
    {
        _manager.New(_sandbox.GuestWithCmdline("off", WorkloadLog.Cmdline));
        Assert.Throws<VmStateException>(() => _manager.Save("off"));
        var snapshot = _manager.Checkpoint("off", "cold"); // no disks: a checkpoint of nothing but the definition
        Assert.False(snapshot.IncludesMemory);
        Assert.Empty(snapshot.DiskSnapshots);
    }
}
