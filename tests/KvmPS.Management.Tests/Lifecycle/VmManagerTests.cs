using System.Diagnostics;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Store;
using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Management.Tests.Lifecycle;

[Collection(VmmCollection.Name)]
public sealed class VmManagerTests : IDisposable
{
    private readonly LifecycleSandbox _sandbox;
    private readonly VmManager _manager;

    public VmManagerTests(VmmFixture fixture)
    {
        _sandbox = new LifecycleSandbox(fixture);
        _manager = _sandbox.Manager;
    }

    public void Dispose() => _sandbox.Dispose();

    [Fact]
    public void A_qcow2_disk_is_created_by_storage_and_seen_by_the_guest_over_virtio_blk()
    {
        var manager = new VmManager(_sandbox.Store, _sandbox.Manager.Launcher, new StorageDiskImageCreator());
        var definition = _sandbox.GuestWithCmdline("blk", "kvmps.run=blk info,blk write 0 8 3,blk flush,exit 0") with
        {
            Disks = new ValueList<DiskDefinition>([new DiskDefinition("data.qcow2", DiskFormat.Qcow2, SizeBytes: 8L << 20)]),
        };
        manager.New(definition);
        string image = _sandbox.Store.ResolveDiskPath("blk", "data.qcow2");
        Assert.Equal("QFI\xfb", System.Text.Encoding.Latin1.GetString(File.ReadAllBytes(image), 0, 4));
        manager.Start("blk");
        string serial = LifecycleSandbox.WaitForSerial(_sandbox.Store.SerialLogPath("blk"), "blk: flushed", 30);
        Assert.Contains("blk: capacity 16384 serial blk-d0 ro 0", serial);
        Assert.Contains("blk: wrote 8", serial);
        LifecycleSandbox.WaitFor(() => manager.Get("blk"), vm => vm.State == VmState.Off, "the guest's debug exit");
    }

    [Fact]
    public void SetBalloon_on_a_running_vm_with_a_balloon_applies_live_and_the_host_gets_the_memory_back()
    {
        var definition = _sandbox.GuestWithCmdline("bal", "kvmps.run=mem touch 64,balloon stats") with
        {
            Memory = new MemorySettings(256L << 20, 64L << 20, 256L << 20),
            BalloonEnabled = true,
        };
        _manager.New(definition);
        _manager.Start("bal");
        string serialPath = _sandbox.Store.SerialLogPath("bal");
        LifecycleSandbox.WaitForSerial(serialPath, "balloon: stats", 30);
        var before = KvmPS.Management.Balloon.VmMemoryStatusReader.Read(_manager, "bal");
        Assert.True(before.GuestResidentBytes >= 60L << 20, $"guest RSS after touching 64 MiB: {before.GuestResidentBytes}");
        Assert.Equal(0, before.BalloonActualBytes);

        var change = _manager.SetBalloon("bal", 160L << 20);
        Assert.True(change.AppliedLive);
        Assert.Equal(256L << 20, _sandbox.Store.Get("bal").Memory.StartupBytes); // a live target is not a new boot size

        // The built-in guest moves its balloon when told to (guest/README.md): type `balloon` on its console.
        using (var client = KvmPS.Management.Vmm.VmmClient.Connect(_sandbox.Store.SocketPath("bal")))
        using (var console = client.AttachConsole(replay: false))
            console.Write("balloon\r"u8);
        LifecycleSandbox.WaitForSerial(serialPath, "balloon: actual 24576", 30); // 96 MiB of 4 KiB pages
        var after = KvmPS.Management.Balloon.VmMemoryStatusReader.Read(_manager, "bal");
        Assert.Equal(96L << 20, after.BalloonActualBytes);
        Assert.Equal(160L << 20, after.GuestUsableBytes);
        Assert.True(after.GuestResidentBytes <= before.GuestResidentBytes - (60L << 20),
            $"guest RSS {before.GuestResidentBytes} -> {after.GuestResidentBytes}: the inflated pages went back to the host");
        Assert.True(after.GuestStats.ContainsKey("total_memory"), string.Join(",", after.GuestStats.Keys));

        // Above the booted size the balloon cannot help: stored for the next start, restart needed.
        _manager.Update("bal", d => d with { Memory = d.Memory with { MaximumBytes = 512L << 20 } });
        var grow = _manager.SetBalloon("bal", 384L << 20);
        Assert.False(grow.AppliedLive);
        Assert.True(grow.RestartNeeded);
        Assert.Equal(384L << 20, _sandbox.Store.Get("bal").Memory.StartupBytes);
        _manager.Stop("bal", force: true);
    }

    [Fact]
    public void Create_start_suspend_resume_stop_remove()
    {
        var created = _manager.New(TestDefinitions.Minimal("web") with { Vcpus = new VcpuSettings(2, 4) });
        Assert.Equal(VmState.Off, created.State);
        Assert.Null(created.Pid);

        var started = _manager.Start("web");
        Assert.Equal(VmState.Running, started.State);
        Assert.NotNull(started.Pid);
        Assert.Equal([started.Pid!.Value], _sandbox.VmmProcesses());
        Assert.Equal(started.Pid.ToString(), File.ReadAllText(_sandbox.Store.PidPath("web")).Trim());
        Assert.Equal(2, started.Live!.Vcpus);
        Assert.Equal(4, started.Live.MaxVcpus);
        Assert.Equal(256L << 20, started.Live.MemoryBytes);
        LifecycleSandbox.WaitForSerial(started.SerialLogPath, "cpus: acpi=2 mp=2 online=2 max=4");

        var info = _manager.Get("web");
        Assert.Equal(VmState.Running, info.State);
        Assert.Equal(started.Pid, info.Pid);
        Assert.True(info.Uptime > TimeSpan.Zero);
        Assert.Equal(["web"], _manager.List().Select(v => v.Name));

        Assert.Equal(VmState.Paused, _manager.Suspend("web").State);
        Assert.Equal(VmState.Paused, _manager.Suspend("web").State); // no-op
        Assert.Equal(VmState.Running, _manager.Resume("web").State);

        var startAgain = Assert.Throws<VmStateException>(() => _manager.Start("web"));
        Assert.Contains("'web' is already running", startAgain.Message);

        // The built-in guest powers off on the ACPI power button once it has enabled ACPI (just after boot it may not
        // have yet, and graceful falls back to forced): either way the VMM ends without being killed.
        var stopped = _manager.Stop("web", TimeSpan.FromSeconds(1));
        Assert.Equal(VmState.Running, stopped.PreviousState);
        Assert.False(stopped.Killed);
        Assert.Empty(_sandbox.VmmProcesses());
        var off = _manager.Get("web");
        Assert.Equal(VmState.Off, off.State);
        Assert.Null(off.Pid);
        Assert.False(File.Exists(_sandbox.Store.PidPath("web")));
        Assert.False(File.Exists(off.SocketPath));
        Assert.False(_manager.Stop("web").WasRunning); // idempotent

        var resumeOff = Assert.Throws<VmStateException>(() => _manager.Resume("web"));
        Assert.Equal(VmState.Off, resumeOff.State);

        var removed = _manager.Remove("web");
        Assert.False(removed.WasRunning);
        Assert.False(_sandbox.Store.Exists("web"));
        Assert.Throws<VmNotFoundException>(() => _manager.Get("web"));
    }

    [Fact]
    public void Vmm_is_detached_from_the_caller()
    {
        _manager.New(TestDefinitions.Minimal("solo"));
        var pid = _manager.Start("solo").Pid!.Value;
        // Own session (setsid), stdin from /dev/null, stdout/stderr to vmm.log.
        var stat = File.ReadAllText($"/proc/{pid}/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        Assert.Equal(pid.ToString(), fields[3]); // session id
        Assert.Equal("/dev/null", new FileInfo($"/proc/{pid}/fd/0").LinkTarget);
        Assert.Equal(_sandbox.Store.VmmLogPath("solo"), new FileInfo($"/proc/{pid}/fd/1").LinkTarget);
        Assert.Equal(_sandbox.Store.VmmLogPath("solo"), new FileInfo($"/proc/{pid}/fd/2").LinkTarget);
        // No pipe or socket shared with the caller (the VMM's own self-pipes are fine).
        static HashSet<string> Handles(string process) => Directory.GetFiles($"/proc/{process}/fd")
            .Select(f => new FileInfo(f).LinkTarget ?? "")
            .Where(t => t.StartsWith("pipe:", StringComparison.Ordinal) || t.StartsWith("socket:", StringComparison.Ordinal))
            .ToHashSet();
        Assert.Empty(Handles(pid.ToString()).Intersect(Handles("self")));
    }

    [Fact]
    public void Vm_outlives_the_process_that_started_it()
    {
        _manager.New(TestDefinitions.Minimal("orphan"));
        var (exitCode, output, error) = HelperProcess.Run(TimeSpan.FromSeconds(60), "start-vm", _sandbox.Root, _sandbox.Fixture.VmmPath, "orphan");
        Assert.True(exitCode == 0, error);
        var pid = int.Parse(output.Trim());

        var info = _manager.Get("orphan");
        Assert.Equal(VmState.Running, info.State);
        Assert.Equal(pid, info.Pid);
        Assert.Equal(VmState.Paused, _manager.Suspend("orphan").State);
        var stop = _manager.Stop("orphan", force: true);
        Assert.True(stop.Forced);
        Assert.False(stop.Killed);
        Assert.Equal(VmState.Off, _manager.Get("orphan").State);
    }

    [Fact]
    public void Guest_power_off_shows_off()
    {
        _manager.New(_sandbox.GuestWithCmdline("down", "kvmps.run=poweroff"));
        var started = _manager.Start("down");
        Assert.Contains(started.State, new[] { VmState.Running, VmState.Off, VmState.Stopping });
        var off = LifecycleSandbox.WaitFor(() => _manager.Get("down"), v => v.State == VmState.Off, "power-off");
        Assert.Null(off.Pid);
        Assert.Null(off.StateReason);
        Assert.Contains("> poweroff", File.ReadAllText(off.SerialLogPath));
        Assert.Empty(_sandbox.VmmProcesses());
        // It can be started again.
        _manager.Start("down");
        LifecycleSandbox.WaitFor(() => _manager.Get("down"), v => v.State == VmState.Off, "second power-off");
    }

    [Fact]
    public void Killed_vmm_shows_crashed_until_stopped_or_restarted()
    {
        _manager.New(TestDefinitions.Minimal("victim"));
        var pid = _manager.Start("victim").Pid!.Value;
        Process.GetProcessById(pid).Kill(); // SIGKILL

        var crashed = LifecycleSandbox.WaitFor(() => _manager.Get("victim"), v => v.State == VmState.Crashed, "crash after kill -9");
        Assert.Equal($"VMM process {pid} died unexpectedly", crashed.StateReason);
        Assert.Null(crashed.Pid);
        Assert.False(crashed.IsActive);

        // A dead VMM needs no -Force to remove or to start again.
        var restarted = _manager.Start("victim");
        Assert.Equal(VmState.Running, restarted.State);
        Assert.NotEqual(pid, restarted.Pid);
        Process.GetProcessById(restarted.Pid!.Value).Kill();
        LifecycleSandbox.WaitFor(() => _manager.Get("victim"), v => v.State == VmState.Crashed, "second crash");

        var stop = _manager.Stop("victim");
        Assert.Equal(VmState.Crashed, stop.PreviousState);
        Assert.Equal(VmState.Off, _manager.Get("victim").State);
    }

    [Fact]
    public void Guest_crash_shows_crashed_with_the_vmm_reason()
    {
        _manager.New(_sandbox.GuestWithCmdline("boom", "kvmps.run=crash"));
        _manager.Start("boom");
        var crashed = LifecycleSandbox.WaitFor(() => _manager.Get("boom"), v => v.State == VmState.Crashed, "guest crash");
        Assert.Contains("triple fault", crashed.StateReason);
        Assert.NotNull(crashed.Pid); // the VMM stays up for inspection
        Assert.Equal("Crashed", crashed.Live!.Exit!.Kind);
        Assert.NotNull(crashed.Live.Exit.Registers);

        var start = Assert.Throws<VmStateException>(() => _manager.Start("boom"));
        Assert.Contains("crashed", start.Message);
        Assert.Throws<VmStateException>(() => _manager.Remove("boom"));

        _manager.Stop("boom");
        Assert.Equal(VmState.Off, _manager.Get("boom").State);
        Assert.Empty(_sandbox.VmmProcesses());
    }

    [Fact]
    public void Restart_recovers_a_crashed_guest()
    {
        _manager.New(_sandbox.GuestWithCmdline("phoenix", "kvmps.run=crash"));
        _manager.Start("phoenix");
        var first = LifecycleSandbox.WaitFor(() => _manager.Get("phoenix"), v => v.State == VmState.Crashed, "guest crash");
        _manager.Restart("phoenix", force: true);
        var second = LifecycleSandbox.WaitFor(() => _manager.Get("phoenix"), v => v.State == VmState.Crashed && v.Pid != first.Pid, "second crash");
        Assert.Single(_sandbox.VmmProcesses());
        Assert.NotNull(second.Pid);
    }

    [Fact]
    public void Missing_kernel_fails_with_vmm_error_and_leaves_nothing_running()
    {
        _manager.New(TestDefinitions.Minimal("nokernel") with { Boot = new DirectKernelBoot("/nonexistent/vmlinuz") });
        var error = Assert.Throws<VmmLaunchException>(() => _manager.Start("nokernel"));
        Assert.Equal("nokernel", error.VmName);
        Assert.Equal(6, error.ExitCode);
        Assert.Contains("VM 'nokernel'", error.Message);
        Assert.Contains("/nonexistent/vmlinuz", error.Message);
        Assert.Contains("/nonexistent/vmlinuz", error.LogTail);

        Assert.Empty(_sandbox.VmmProcesses());
        Assert.False(File.Exists(_sandbox.Store.PidPath("nokernel")));
        Assert.False(File.Exists(_sandbox.Store.SocketPath("nokernel")));
        Assert.False(File.Exists(_sandbox.Store.SocketLockPath("nokernel")));
        Assert.Equal(VmState.Off, _manager.Get("nokernel").State);
    }

    [Fact]
    public void A_host_pci_function_the_host_lacks_fails_start_naming_it_and_binds_nothing()
    {
        _manager.New(TestDefinitions.Minimal("fancy") with
        {
            BalloonEnabled = true,
            PciPassthrough = new[] { PciAddress.Parse("0000:ee:1f.7") },
        });
        // Passthrough is no longer refused as a feature: the host check at start names the device and why.
        var error = Assert.Throws<KvmPS.Management.HostDevices.PciPassthroughException>(() => _manager.Start("fancy"));
        Assert.Contains("0000:ee:1f.7", error.Message);
        Assert.Contains("no such device", error.Message);
        Assert.Empty(_sandbox.VmmProcesses());
        Assert.False(File.Exists(_sandbox.Store.PidPath("fancy")));
        Assert.False(File.Exists(Path.Combine(_sandbox.Store.VmDirectory("fancy"), "pci-bindings")));
        Assert.Equal(VmState.Off, _manager.Get("fancy").State);
    }

    [Fact]
    public void Remove_of_a_running_vm_needs_force()
    {
        _manager.New(TestDefinitions.Minimal("busy"));
        _manager.Start("busy");
        var error = Assert.Throws<VmStateException>(() => _manager.Remove("busy"));
        Assert.Equal("VM 'busy' is running; use -Force to stop and remove it", error.Message);
        Assert.Equal(VmState.Running, _manager.Get("busy").State);

        var removed = _manager.Remove("busy", force: true, deleteDisks: false);
        Assert.True(removed.WasRunning);
        Assert.NotNull(removed.RetainedDisksDirectory);
        Assert.False(_sandbox.Store.Exists("busy"));
        Assert.Empty(_sandbox.VmmProcesses());
    }

    [Fact]
    public void SetVcpu_validates_against_the_maximum_and_reports_restart_needed_while_running()
    {
        _manager.New(TestDefinitions.Minimal("cpus") with { Vcpus = new VcpuSettings(1, 4) });

        var error = Assert.Throws<ManagementValidationException>(() => _manager.SetVcpu("cpus", 5));
        Assert.Equal("VcpuCount", error.Property);
        Assert.Contains("VM 'cpus'", error.Message);
        Assert.Contains("maximum of 4", error.Message);
        Assert.Throws<ManagementValidationException>(() => _manager.SetVcpu("cpus", 0));
        Assert.Throws<ManagementValidationException>(() => _manager.SetVcpu("cpus", 2, 300));
        Assert.Equal(new VcpuSettings(1, 4), _sandbox.Store.Get("cpus").Vcpus);

        var offline = _manager.SetVcpu("cpus", 2);
        Assert.False(offline.RestartNeeded);
        Assert.Equal(ChangeApplication.Stored, Assert.Single(offline.Changes).Application);

        _manager.Start("cpus");
        var online = _manager.SetVcpu("cpus", 3, 8);
        // The count is within the maximum the VMM started with (4): hot-plugged now; the new maximum waits for a restart.
        Assert.True(online.RestartNeeded);
        Assert.True(online.AppliedLive);
        Assert.Equal([("VcpuCount", ChangeApplication.AppliedLive), ("VcpuMaximum", ChangeApplication.RestartNeeded)],
            online.Changes.Select(c => (c.Property, c.Application)));
        Assert.Equal(new VcpuSettings(3, 8), _sandbox.Store.Get("cpus").Vcpus);
        Assert.Equal(4, _manager.Get("cpus").Live!.MaxVcpus); // still the old maximum until restart

        var notes = _manager.Update("cpus", d => d with { Notes = "hello", Autostart = true });
        Assert.False(notes.RestartNeeded);
        Assert.All(notes.Changes, c => Assert.Equal(ChangeApplication.Stored, c.Application));

        var same = _manager.Update("cpus", d => d with { });
        Assert.False(same.Changed);

        var rename = Assert.Throws<ManagementValidationException>(() => _manager.Update("cpus", d => d with { Name = "other" }));
        Assert.Equal("Name", rename.Property);

        _manager.Restart("cpus", force: true);
        Assert.Equal(3, _manager.Get("cpus").Live!.Vcpus);
        Assert.Equal(8, _manager.Get("cpus").Live!.MaxVcpus);
    }

    [Fact]
    public void SetBalloon_validates_against_the_memory_range()
    {
        _manager.New(TestDefinitions.Minimal("mem") with { Memory = new MemorySettings(512L << 20, 256L << 20, 1L << 30) });

        var above = Assert.Throws<ManagementValidationException>(() => _manager.SetBalloon("mem", 2L << 30));
        Assert.Equal("BalloonTarget", above.Property);
        Assert.Contains("VM 'mem'", above.Message);
        Assert.Contains("above the VM's maximum memory of 1GB", above.Message);
        var below = Assert.Throws<ManagementValidationException>(() => _manager.SetBalloon("mem", 128L << 20));
        Assert.Contains("below the VM's minimum memory of 256MB", below.Message);
        Assert.Equal(512L << 20, _sandbox.Store.Get("mem").Memory.StartupBytes);

        var changed = _manager.SetBalloon("mem", 768L << 20);
        Assert.Equal("MemoryStartupBytes", Assert.Single(changed.Changes).Property);
        Assert.False(changed.RestartNeeded);
        Assert.Equal(768L << 20, _sandbox.Store.Get("mem").Memory.StartupBytes);

        Assert.Equal(768L << 20, _manager.Start("mem").Live!.MemoryBytes);
        Assert.True(_manager.SetBalloon("mem", 512L << 20).RestartNeeded);
    }

    [Fact]
    public void Autostart_starts_only_autostart_vms_that_are_not_running()
    {
        _manager.New(TestDefinitions.Minimal("auto-a") with { Autostart = true });
        _manager.New(TestDefinitions.Minimal("manual"));
        _manager.New(TestDefinitions.Minimal("auto-b") with { Autostart = true });
        _manager.New(TestDefinitions.Minimal("auto-bad") with { Autostart = true, Boot = new DirectKernelBoot("/nonexistent/k") });
        var running = _manager.Start("auto-b");

        var results = _manager.Autostart().Where(r => r.Kind == AutostartResourceKind.Vm).ToList();
        Assert.Equal(["auto-a", "auto-b", "auto-bad"], results.Select(r => r.Name));
        Assert.Equal(AutostartOutcome.Started, results[0].Outcome);
        Assert.Equal(VmState.Running, results[0].Info!.State);
        Assert.Equal(AutostartOutcome.AlreadyRunning, results[1].Outcome);
        Assert.Equal(running.Pid, results[1].Info!.Pid);
        Assert.Equal(AutostartOutcome.Failed, results[2].Outcome);
        Assert.IsType<VmmLaunchException>(results[2].Error);

        Assert.Equal(VmState.Off, _manager.Get("manual").State);
        Assert.Equal(2, _sandbox.VmmProcesses().Count);
    }

    [Fact]
    public void New_with_disks_needs_a_disk_image_creator_and_leaves_nothing_on_failure()
    {
        var definition = TestDefinitions.Minimal("disky") with { Disks = new[] { new DiskDefinition("root.raw", DiskFormat.Raw, 1L << 20) } };
        var error = Assert.Throws<ManagementValidationException>(() => _manager.New(definition));
        Assert.Equal("Disks[0].SizeBytes", error.Property);
        Assert.False(_sandbox.Store.Exists("disky"));

        var outside = Path.Combine(_sandbox.Root, "outside.raw");
        var creator = new FakeDiskCreator(failOnIndex: 1);
        var manager = new VmManager(_sandbox.Store, _sandbox.Manager.Launcher, creator);
        var twoDisks = TestDefinitions.Minimal("disky") with
        {
            Disks = new[] { new DiskDefinition(outside, DiskFormat.Raw, 1L << 20), new DiskDefinition("b.raw", DiskFormat.Raw, 1L << 20) },
        };
        Assert.Throws<IOException>(() => manager.New(twoDisks));
        Assert.False(_sandbox.Store.Exists("disky"));
        Assert.False(File.Exists(outside));

        var ok = new VmManager(_sandbox.Store, _sandbox.Manager.Launcher, new FakeDiskCreator(failOnIndex: -1));
        var progress = new List<OperationProgress>();
        ok.New(twoDisks, new SynchronousProgress(progress.Add));
        Assert.True(File.Exists(outside));
        Assert.True(File.Exists(Path.Combine(_sandbox.Store.DiskDirectory("disky"), "b.raw")));
        Assert.Equal(100, progress[^1].PercentComplete);
        Assert.True(progress[^1].Completed);
        Assert.All(progress, p => Assert.Equal("disky", p.VmName));
        // Each disk's own 0-100 is scaled into its half: the first image's "done" is 50, not 100.
        Assert.Equal(new[] { 0, 0, 50, 50, 100, 100 }, progress.Select(p => p.PercentComplete));

        // The VMM runs disks (virtio-blk): the VM starts with both.
        Assert.Equal(VmState.Running, ok.Start("disky").State);
        ok.Stop("disky", force: true);
    }

    private sealed class FakeDiskCreator(int failOnIndex) : IDiskImageCreator
    {
        public void CreateImage(DiskImageRequest request, IProgress<OperationProgress>? progress)
        {
            if (request.Index == failOnIndex)
                throw new IOException("disk creation failed");
            using var file = new FileStream(request.Path, FileMode.CreateNew);
            file.SetLength(request.Disk.SizeBytes!.Value);
            progress?.Report(new OperationProgress("Creating disk image", "Created", 100));
        }
    }
}
