using KvmPS.Interop;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Tests.TestSupport;
using KvmPS.Management.Vmm;

namespace KvmPS.Management.Tests.Lifecycle;

/// <summary>
/// Issue 17 item 1 with the real kvmps-vmm: a VM's CPU weight and cap and its VMM's memory overhead limit reach its
/// cgroup at start, and a change on a running VM is written into it live (docs/confinement.md, "cgroup limits").
/// </summary>
[Collection(VmmCollection.Name)]
public sealed class ResourceLimitsVmmTests : IDisposable
{
    private readonly LifecycleSandbox _sandbox;
    private readonly List<string> _cgroups = [];

    public ResourceLimitsVmmTests(VmmFixture fixture) => _sandbox = new LifecycleSandbox(fixture);

    public void Dispose()
    {
        _sandbox.Dispose();
        // The cgroup folders stay after a VMM (the next start reuses them); a test's are removed once its VMM is gone.
        foreach (string folder in _cgroups)
            for (int i = 0; i < 50 && Directory.Exists(folder); i++)
            {
                try { Directory.Delete(folder); } catch (IOException) { Thread.Sleep(100); }
            }
    }

    private static string Read(IReadOnlyList<string> folders, string file) =>
        File.ReadAllText(Path.Join(folders.First(f => File.Exists(Path.Join(f, file))), file)).Trim();

    /// <summary>(weight, cap in percent of one host CPU or null, memory limit or null) as the kernel shows them, v2 or v1.</summary>
    private static (int Weight, int? CapPercent, long? MemoryBytes) Kernel(IReadOnlyList<string> folders)
    {
        if (folders.Count == 1 && File.Exists(Path.Join(folders[0], "cgroup.controllers")))
        {
            var max = Read(folders, "cpu.max").Split(' ');
            var memory = Read(folders, "memory.max");
            return (int.Parse(Read(folders, "cpu.weight")), max[0] == "max" ? null : (int)(long.Parse(max[0]) * 100 / long.Parse(max[1])),
                memory == "max" ? null : long.Parse(memory));
        }
        long quota = long.Parse(Read(folders, "cpu.cfs_quota_us")), limit = long.Parse(Read(folders, "memory.limit_in_bytes"));
        return ((int)(long.Parse(Read(folders, "cpu.shares")) * 100 / 1024), quota < 0 ? null : (int)(quota * 100 / long.Parse(Read(folders, "cpu.cfs_period_us"))),
            limit > 1L << 50 ? null : limit);
    }

    [Fact]
    public void Limits_reach_the_vmms_cgroup_at_start_and_a_change_is_written_live()
    {
        var definition = TestDefinitions.Minimal("lim") with { Vcpus = new VcpuSettings(2, 3), CpuRelativeWeight = 400, CpuMaximumPercent = 50, VmmOverheadLimitBytes = 128L << 20 };
        _sandbox.Manager.New(definition);
        _sandbox.Manager.Start("lim");
        try
        {
            var vm = LifecycleSandbox.WaitFor(() => _sandbox.Manager.Get("lim"), v => v.State == VmState.Running, "running", 60);
            var folders = VmmCgroupOptions.FoldersOf(vm.Pid!.Value, "lim");
            Assert.NotEmpty(folders);
            _cgroups.AddRange(folders);
            Assert.Equal((400, 100, (256L << 20) + (128L << 20)), Kernel(folders));
            Assert.True(vm.Live!.CgroupLimits);

            var result = _sandbox.Manager.ChangeSettings("lim", new VmSettingsChange { CpuRelativeWeight = 100, CpuMaximumPercent = 25, VmmOverheadLimitBytes = 256L << 20 });
            Assert.All(result.Changes, c => Assert.Equal(ChangeApplication.AppliedLive, c.Application));
            Assert.Equal((100, 50, (512L << 20)), Kernel(folders));
            Assert.Equal(25, _sandbox.Manager.GetDefinition("lim").CpuMaximumPercent);

            // The cap is a share of the vCPUs: a third one hot-plugged moves it from 50% to 75% of one host CPU.
            var vcpus = _sandbox.Manager.SetVcpu("lim", 3);
            Assert.Equal(ChangeApplication.AppliedLive, Assert.Single(vcpus.Changes).Application);
            Assert.Equal((100, 75, (512L << 20)), Kernel(folders));

            // Back to no cap and no memory limit, still live.
            _sandbox.Manager.ChangeSettings("lim", new VmSettingsChange { CpuMaximumPercent = 100, VmmOverheadLimitBytes = 0 });
            Assert.Equal((100, (int?)null, (long?)null), Kernel(folders));
        }
        finally
        {
            _sandbox.Manager.Stop("lim", force: true);
        }
    }

    [Fact]
    public void A_vm_started_without_limits_or_jail_takes_new_limits_at_its_next_start()
    {
        _sandbox.Manager.New(TestDefinitions.Minimal("plain"));
        _sandbox.Manager.Start("plain");
        try
        {
            var vm = LifecycleSandbox.WaitFor(() => _sandbox.Manager.Get("plain"), v => v.State == VmState.Running, "running", 60);
            if (VmmJailOptions.JailUser() is null) Assert.False(vm.Live!.CgroupLimits);
            else return; // jailed by the environment: it has its cgroup, the first test covers that case
            var result = _sandbox.Manager.ChangeSettings("plain", new VmSettingsChange { CpuRelativeWeight = 42 });
            var change = Assert.Single(result.Changes);
            Assert.Equal(ChangeApplication.RestartNeeded, change.Application);
            Assert.Equal(42, _sandbox.Manager.GetDefinition("plain").CpuRelativeWeight);
            var e = Assert.Throws<ManagementValidationException>(() => _sandbox.Manager.ChangeSettings("plain", new VmSettingsChange { CpuRelativeWeight = 43 }, ChangeScope.Live));
            Assert.Contains("no cgroup of its own", e.Message);
        }
        finally
        {
            _sandbox.Manager.Stop("plain", force: true);
        }
    }
}
