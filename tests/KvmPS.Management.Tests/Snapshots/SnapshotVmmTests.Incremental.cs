using KvmPS.Management.Lifecycle;
using KvmPS.Management.Snapshots;
using KvmPS.Management.Tests.TestSupport;
using static KvmPS.Management.Tests.TestSupport.WorkloadLog;

namespace KvmPS.Management.Tests.Snapshots;

// Incremental checkpoints (diff snapshots of memory) on the running "work" guest.
public sealed partial class SnapshotVmmTests
{
    private static readonly CheckpointOptions Incremental = new() { Incremental = true };

    [Fact]
    public void Incremental_checkpoints_build_on_the_previous_one_restore_through_the_chain_and_keep_their_parents()
    {
        StartWorkload("inc");
        // A fresh VMM has no snapshot to build on: refused by the VMM, nothing left behind.
        var early = Assert.Throws<VmStateException>(() => _manager.Checkpoint("inc", "early", Incremental));
        Assert.Contains("diff", early.Message);
        Assert.Empty(_manager.GetSnapshots("inc"));
        Assert.Empty(Directory.EnumerateDirectories(Path.Combine(_sandbox.Store.VmDirectory("inc"), SnapshotStore.SnapshotsDirectoryName)));

        var full = _manager.Checkpoint("inc", "full");
        WaitForCount("inc", Counts(Serial("inc"))[^1] + 3);
        var first = _manager.Checkpoint("inc", "inc1", Incremental);
        Assert.False(IncrementalChain.IsIncremental(full));
        Assert.True(IncrementalChain.IsIncremental(first));
        Assert.Equal(full.Id, first.ParentId);
        // The VMM wrote it on the staging folder the full checkpoint was taken in; it now names the committed one.
        Assert.Equal(full.VmmDirectory, IncrementalChain.ParentDirectoryOf(first.VmmDirectory));
        Assert.True(File.Exists(Path.Combine(first.VmmDirectory, "pages.bin")));

        WaitForCount("inc", Counts(Serial("inc"))[^1] + 3);
        var before = Counts(Serial("inc"))[^1];
        var second = _manager.Checkpoint("inc", "inc2", Incremental);
        var lastBack = LastCountBack(Serial("inc"));
        Assert.Equal(first.VmmDirectory, IncrementalChain.ParentDirectoryOf(second.VmmDirectory));
        Assert.Equal(first.Id, second.ParentId);

        // A checkpoint an incremental one builds on stays, and the error names both.
        var guarded = Assert.Throws<ManagementValidationException>(() => _manager.RemoveSnapshot("inc", "full"));
        Assert.Contains("'full'", guarded.Message);
        Assert.Contains("'inc1'", guarded.Message);
        Assert.Contains("'inc2'", Assert.Throws<ManagementValidationException>(() => _manager.RemoveSnapshot("inc", "inc1")).Message);
        Assert.Equal(3, _manager.GetSnapshots("inc").Count);

        // Restoring the newest diff follows inc2 -> inc1 -> full: the counter goes on from inc2, the pattern verifies.
        WaitForCount("inc", lastBack + 5);
        var mark = Serial("inc").Length;
        var restored = _manager.RestoreSnapshot("inc", "inc2");
        Assert.Equal(VmState.Running, restored.State);
        // The old VMM may print a few more counts (all above lastBack + 5) before it is turned off; the restored one
        // goes on from inc2, so a count from before + 1 to lastBack appears after the mark only if the restore worked.
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (!Counts(Serial("inc")[mark..]).Any(c => c >= before + 1 && c <= lastBack))
        {
            Assert.True(DateTime.UtcNow < deadline, $"the restored guest did not go on from count {before}-{lastBack - 1}: " + Serial("inc")[mark..]);
            Thread.Sleep(50);
        }
        Assert.DoesNotContain("FAILED", Serial("inc"));

        // The restored VMM builds its next diff on the checkpoint it was restored from.
        var third = _manager.Checkpoint("inc", "inc3", Incremental);
        Assert.Equal(second.VmmDirectory, IncrementalChain.ParentDirectoryOf(third.VmmDirectory));

        // The newest goes alone; the rest go together with -IncludeAllChildSnapshots.
        Assert.Single(_manager.RemoveSnapshot("inc", "inc3"));
        Assert.Equal(3, _manager.RemoveSnapshot("inc", "full", includeChildren: true).Count);
        Assert.Empty(_manager.GetSnapshots("inc"));
    }

    [Fact]
    public void An_exported_and_imported_incremental_chain_restores_from_its_new_place()
    {
        StartWorkload("inc-x");
        _manager.Checkpoint("inc-x", "full");
        WaitForCount("inc-x", Counts(Serial("inc-x"))[^1] + 3);
        var before = Counts(Serial("inc-x"))[^1];
        _manager.Checkpoint("inc-x", "diff", Incremental);
        var lastBack = LastCountBack(Serial("inc-x"));
        _manager.Stop("inc-x", force: true);
        var export = Path.Combine(_sandbox.Root, "export");
        Directory.CreateDirectory(export);
        _manager.Export("inc-x", export);
        _manager.Remove("inc-x");

        _manager.Import(Path.Combine(export, "inc-x"));
        var diff = _manager.GetSnapshot("inc-x", "diff");
        // The parent file names the imported full checkpoint, not the removed VM's folder.
        Assert.Equal(_manager.GetSnapshot("inc-x", "full").VmmDirectory, IncrementalChain.ParentDirectoryOf(diff.VmmDirectory));
        var mark = Serial("inc-x").Length;
        Assert.Equal(VmState.Running, _manager.RestoreSnapshot("inc-x", "diff").State);
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (Counts(Serial("inc-x")[mark..]).Count == 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "the restored guest printed no count: " + Serial("inc-x")[mark..]);
            Thread.Sleep(50);
        }
        Assert.InRange(Counts(Serial("inc-x")[mark..])[0], before + 1, lastBack);
        Assert.DoesNotContain("FAILED", Serial("inc-x"));
    }

    [Fact]
    public void An_incremental_checkpoint_of_a_VM_that_is_off_is_a_state_error()
    {
        _manager.New(_sandbox.GuestWithCmdline("inc-off", WorkloadLog.Cmdline));
        var error = Assert.Throws<VmStateException>(() => _manager.Checkpoint("inc-off", "x", Incremental));
        Assert.Contains("running or paused", error.Message);
        Assert.Empty(_manager.GetSnapshots("inc-off"));
    }
}
