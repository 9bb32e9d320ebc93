using KvmPS.Management.Store;
using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Management.Tests.Store;

public sealed class VmStoreConcurrencyTests : IDisposable
{
    private static readonly TimeSpan HelperTimeout = TimeSpan.FromMinutes(2);
    private readonly TempDirectory _root = new();

    public void Dispose() => _root.Dispose();

    [Fact]
    public void Threads_each_with_their_own_lock_descriptor_serialize()
    {
        var store = VmStore.Open(_root.Path);
        var threads = Enumerable.Range(0, 8).Select(_ => new Thread(() => Program.Increment(store, _root.Path, 50))).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        Assert.Equal("400", File.ReadAllText(Path.Combine(_root.Path, "counter")));
    }

    [Fact]
    public void Concurrent_creates_from_many_threads_all_land()
    {
        var store = VmStore.Open(_root.Path);
        Parallel.For(0, 40, new ParallelOptions { MaxDegreeOfParallelism = 8 }, i => store.Create(TestDefinitions.Minimal($"vm-{i}")));
        Assert.Equal(40, store.ListNames().Count);
        Assert.Empty(Directory.GetDirectories(store.VmsDirectory, ".*"));
    }

    [Fact]
    public void Concurrent_creates_of_one_name_have_exactly_one_winner()
    {
        var store = VmStore.Open(_root.Path);
        var outcomes = new int[16];
        Parallel.For(0, outcomes.Length, new ParallelOptions { MaxDegreeOfParallelism = 16 }, i =>
        {
            try
            {
                VmStore.Open(_root.Path).Create(TestDefinitions.Minimal("contested") with { Notes = $"writer {i}" });
                outcomes[i] = 1;
            }
            catch (VmAlreadyExistsException)
            {
                outcomes[i] = 2;
            }
        });
        Assert.Equal(1, outcomes.Count(o => o == 1));
        Assert.Equal(outcomes.Length - 1, outcomes.Count(o => o == 2));
        Assert.Equal(new[] { "contested" }, store.ListNames());
    }

    [Fact]
    public void Separate_processes_and_threads_serialize_on_the_same_lock()
    {
        VmStore.Open(_root.Path);
        var processes = Enumerable.Range(0, 3).Select(_ => HelperProcess.Start("increment", _root.Path, "40")).ToList();
        var local = new Thread(() => Program.Increment(VmStore.Open(_root.Path), _root.Path, 40));
        local.Start();
        foreach (var process in processes)
        {
            Assert.True(process.WaitForExit(HelperTimeout), "helper did not finish");
            Assert.True(process.ExitCode == 0, process.StandardError.ReadToEnd());
            process.Dispose();
        }
        local.Join();
        Assert.Equal("160", File.ReadAllText(Path.Combine(_root.Path, "counter")));
    }

    [Fact]
    public void Separate_processes_creating_vms_concurrently()
    {
        var processes = new[]
        {
            HelperProcess.Start("create-many", _root.Path, "p1", "10"),
            HelperProcess.Start("create-many", _root.Path, "p2", "10"),
            HelperProcess.Start("create-same", _root.Path, "shared"),
            HelperProcess.Start("create-same", _root.Path, "shared"),
        };
        var exitCodes = processes.Select(p =>
        {
            Assert.True(p.WaitForExit(HelperTimeout));
            var code = p.ExitCode;
            p.Dispose();
            return code;
        }).ToArray();
        Assert.Equal(new[] { 0, 0 }, exitCodes[..2]);
        Assert.Equal(new[] { 0, 3 }, exitCodes[2..].Order());
        Assert.Equal(21, VmStore.Open(_root.Path).ListNames().Count);
    }

    [Fact]
    public void A_lock_held_by_another_process_blocks_writers_until_timeout()
    {
        var store = VmStore.Open(_root.Path, lockTimeoutMs: 200);
        using var holder = HelperProcess.Start("hold-lock", _root.Path, "3000");
        Assert.Equal("locked", holder.StandardOutput.ReadLine());
        var error = Assert.Throws<StoreLockTimeoutException>(() => store.Create(TestDefinitions.Minimal("blocked")));
        Assert.Equal(200, error.TimeoutMs);
        Assert.Equal(Path.Combine(_root.Path, ".lock"), error.LockPath);
        Assert.True(holder.WaitForExit(HelperTimeout));
        store.Create(TestDefinitions.Minimal("blocked"));
    }

    [Fact]
    public void Lock_is_compatible_with_the_flock_utility()
    {
        // Another tool using flock(1) on the same file excludes us too: it is a real flock(2) lock.
        var store = VmStore.Open(_root.Path, lockTimeoutMs: 100);
        var info = new System.Diagnostics.ProcessStartInfo("flock", new[] { Path.Combine(_root.Path, ".lock"), "-c", "echo locked; sleep 2" })
        {
            RedirectStandardOutput = true,
        };
        using var flock = System.Diagnostics.Process.Start(info)!;
        Assert.Equal("locked", flock.StandardOutput.ReadLine());
        // Opening the store also takes the lock (to recover interrupted operations).
        Assert.Throws<StoreLockTimeoutException>(() => VmStore.Open(_root.Path, lockTimeoutMs: 100));
        Assert.Throws<StoreLockTimeoutException>(() => store.Delete("x", DiskRetention.Delete));
        flock.WaitForExit();
    }
}
