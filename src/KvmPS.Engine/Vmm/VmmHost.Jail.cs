using System.Text.Json;
using KvmPS.Contract;
using KvmPS.Sandbox;
using KvmPS.Vm;

namespace KvmPS.Vmm;

/// <summary>The jail (docs/confinement.md, "The jail"): entered once the first machine is built, before its vCPUs run.</summary>
public sealed partial class VmmHost
{
    /// <summary><c>--jail</c>, <c>--user</c>, <c>--cgroup</c>; off unless given.</summary>
    public JailSettings Jail { get; init; } = JailSettings.Off;

    /// <summary>The user <see cref="Jail"/> drops to, resolved when the arguments are read (a missing user fails the start before anything is built).</summary>
    public JailUser? JailUser { get; init; }

    /// <summary>The move into --cgroup, started before the VMM was built (VmmCgroup.Prepare); null without --cgroup.</summary>
    public CgroupJoin? CgroupJoin { get; init; }

    private bool _jailed;

    /// <summary>The jail user's ids while this VMM is still root and will drop to them; null otherwise.</summary>
    private (uint Uid, uint Gid)? JailOwner =>
        Jail.Enabled && JailUser is { } user && !_jailed && Interop.Libc.GetEuid() == 0 ? (user.Uid, user.Gid) : null;

    /// <summary>A file this VMM made as root before the jail becomes the jail user's (the link itself, never a target).</summary>
    private void GiveToJailUser(string path)
    {
        if (JailOwner is not { } owner) return;
        if (Interop.Libc.Lchown(path, owner.Uid, owner.Gid) != 0)
            _log.WriteLine($"kvmps-vmm: warning: cannot give {path} to the jail's user: {new System.ComponentModel.Win32Exception(System.Runtime.InteropServices.Marshal.GetLastPInvokeError()).Message}");
    }

    /// <summary>
    /// What is done as root before anything is built: the cgroup (guest RAM is charged to the cgroup the VMM is in
    /// when it is touched), and the refusal of a jail that cannot drop root because there is none. Null: go on.
    /// <paramref name="bulkMemoryBeforeRun"/>: the build fills guest RAM (a restore, an incoming migration).
    /// </summary>
    private static int? PrepareJail(JailSettings jail, bool bulkMemoryBeforeRun, TextWriter stderr, out CgroupJoin? cgroupJoin)
    {
        cgroupJoin = null;
        if (jail.Enabled && Interop.Libc.GetEuid() == 0)
        {
            // First, before this process writes to the console or starts a thread (but the one making the KVM VM, which
            // has ended by the pivot): every thread then shares the jail's namespace, and its root at the pivot (VmmJail).
            try { VmmJail.EnterMountNamespace(); }
            catch (SandboxException e) { stderr.WriteLine($"kvmps-vmm: error: the jail cannot be set up: {e.Message} (--jail off runs without it)"); return VmmExitCode.HostResource; }
            Diagnostics.StartupTimeline.Mark("mount-ns");
        }
        if (jail.Cgroup is { } cgroup)
        {
            try
            {
                // Folders, limits and cgroup.procs opened now, as root; the move on its own thread (docs/confinement.md,
                // "cgroup"). It waits for an RCU grace period, so a fresh boot without a memory limit makes it after the
                // jail's drop (which would otherwise wait for it) while the guest starts (MoveIntoCgroupWhileRunning).
                cgroupJoin = VmmCgroup.Prepare(cgroup, stderr.WriteLine, jail.Limits);
                stderr.WriteLine($"kvmps-vmm: cgroup {string.Join(", ", cgroupJoin.Folders)}{(jail.Limits.IsNone ? "" : $" ({Describe(jail.Limits)})")}");
                // The guest RAM a build touches is charged where the process is when it touches it, and a charge does
                // not move with the process: with a memory limit the move is made before the build, and a build that
                // copies guest RAM (a snapshot, pages a migration sends) makes it before that RAM runs uncounted.
                if (jail.Limits.MemoryMaxBytes is not null || bulkMemoryBeforeRun || !cgroupJoin.MovableAfterDrop) cgroupJoin.Start();
                if (jail.Limits.MemoryMaxBytes is not null) cgroupJoin.Wait();
            }
            catch (Exception e) when (e is SandboxException or IOException or UnauthorizedAccessException)
            { stderr.WriteLine($"kvmps-vmm: error: {e.Message}"); return VmmExitCode.HostResource; }
        }
        if (jail.Enabled && Interop.Libc.GetEuid() != 0)
        {
            stderr.WriteLine("kvmps-vmm: error: the jail (--jail on, --user) is set up as root and drops root, but kvmps-vmm does not run as root (--jail off runs without it)");
            return VmmExitCode.UsageError;
        }
        // Before the sandbox's filters, which lack setns.
        try { VmmJail.AwaitFinalizerThread(); }
        catch (SandboxException e) { stderr.WriteLine($"kvmps-vmm: error: the jail cannot be set up: {e.Message} (--jail off runs without it)"); return VmmExitCode.HostResource; }
        return null;
    }

    private static string Describe(Interop.CgroupLimits limits) => string.Join(", ", new[]
    {
        limits.CpuWeight is { } w ? $"cpu weight {w}" : null,
        limits.CpuMaxPercent is { } p ? $"cpu max {p}% of one CPU" : null,
        limits.MemoryMaxBytes is { } m ? $"memory max {m} bytes" : null,
    }.Where(s => s is not null));

    /// <summary>
    /// Waits until the VMM is in its cgroup (<see cref="CgroupJoin"/>), before any guest code runs, when the move was
    /// started before the build; a move left for after the jail is <see cref="MoveIntoCgroupWhileRunning"/>'s.
    /// </summary>
    private int? AwaitCgroupJoinBeforeRun() =>
        CgroupJoin is { Started: true } && FinishCgroupMove() is { } failure ? Fail(VmmExitCode.HostResource, failure) : null;

    /// <summary>
    /// The first boot's move when it was left for now: started after the jail dropped root (through the files opened as
    /// root), while the vCPUs run, and waited for before the control socket answers, so that a VMM that answers is in
    /// its cgroup (management reads it from /proc/PID/cgroup for a live limit change). A failed move ends the VM.
    /// </summary>
    private int? MoveIntoCgroupWhileRunning(VirtualMachine machine)
    {
        if (CgroupJoin is null || CgroupJoin.Started) return null;
        CgroupJoin.Start();
        if (FinishCgroupMove() is not { } failure) return null;
        machine.Stop("its cgroup could not be joined");
        return Fail(VmmExitCode.HostResource, failure);
    }

    /// <summary>Waits for the started move and marks it in the start-up trace; its failure message, or null.</summary>
    private string? FinishCgroupMove()
    {
        try { CgroupJoin!.Wait(); }
        catch (SandboxException e) { return e.Message; }
        Diagnostics.StartupTimeline.Mark("cgroup");
        return null;
    }

    /// <summary>Builds the private root and drops to the jail's user; a failure ends the start (exit 8) naming the step.</summary>
    private int? EnterJail()
    {
        if (!Jail.Enabled || _jailed) return null;
        try
        {
            GuestMemory.KeepPagemapOpen(); // root's 0400 once the VMM has left root (non-dumpable)
            _ = Interop.Kvm.IsNestedThroughPvm; // describe and status report it; the jail has no /sys
            string what = VmmJail.Enter(JailUser!, JailPaths());
            VmmSandbox.NarrowMainThread();
            _jailed = true;
            _log.WriteLine($"kvmps-vmm: {what}");
        }
        catch (Exception e) when (e is SandboxException or IOException or UnauthorizedAccessException)
        {
            return Fail(VmmExitCode.HostResource, $"the jail cannot be set up: {e.Message} (--jail off runs without it)");
        }
        return null;
    }

    /// <summary>
    /// What the VMM may still open once jailed, at the same paths: the VM's folder (control socket, serial log,
    /// snapshots and disks in it), the kernel, initrd and firmware read-only (a guest reboot loads them again), every
    /// path a device names (images, sockets; for a path not yet made, its folder), a restore's snapshot, the device
    /// nodes, and /proc (the runtime's memory figures, <c>metrics</c>).
    /// </summary>
    private List<JailPath> JailPaths()
    {
        var paths = new List<JailPath>();
        void Folder(string? file) { if (file is not null && Path.GetDirectoryName(Path.GetFullPath(file)) is { } dir) paths.Add(new JailPath(dir)); }
        void Existing(string? path, bool writable)
        {
            if (path is null || !path.StartsWith('/')) return;
            if (File.Exists(path) || Directory.Exists(path) || Interop.Libc.FileTypeOf(path) != 0) paths.Add(new JailPath(path, writable));
            else if (Path.GetDirectoryName(path) is { } dir && Directory.Exists(dir)) paths.Add(new JailPath(dir, writable));
        }
        Folder(_config.ControlSocket);
        if (_config.Serial == SerialMode.File) Folder(_config.SerialPath);
        var m = _config.Machine;
        Existing(m.KernelPath, writable: false);
        Existing(m.InitrdPath, writable: false);
        Existing(m.FirmwarePath, writable: false);
        if (_config.DebugCon is { } debugCon && debugCon != "stderr") Existing(debugCon, writable: true);
        if (_config.Vnc?.UnixPath is { } vnc) Folder(vnc);
        if (_restore is not null) Existing(_restore.Snapshot.Directory, writable: false);
        foreach (var device in m.Devices)
        {
            using var options = JsonDocument.Parse(VirtualMachine.DescribeJson(device));
            foreach (var property in options.RootElement.EnumerateObject())
                if (property.Value.ValueKind == JsonValueKind.String) Existing(property.Value.GetString(), writable: true);
        }
        foreach (string node in VmmJail.Devices) Existing(node, writable: true);
        // Tap devices are opened again by a guest reboot's new machine and by a NIC plugged in later.
        Existing("/dev/net/tun", writable: true);
        paths.Add(new JailPath("/proc"));
        return paths;
    }
}
