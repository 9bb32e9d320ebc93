using System.Diagnostics;
using System.Reflection;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using System.Buffers;
using System.Text.Json;
using KvmPS.Contract;
using KvmPS.Devices.Config;
using KvmPS.Interop;
using KvmPS.Threading;
using KvmPS.Vm;
using KvmPS.Vm.Boot;

namespace KvmPS.Vmm;

/// <summary>
/// The kvmps-vmm process: one VM, its console, its control socket. Builds the VM (again after a guest reset when
/// the policy is reboot), waits for it to end, and turns how it ended into the documented exit status.
/// </summary>
public sealed partial class VmmHost : IVmmControl, IDisposable
{
    private readonly VmmConfig _config;
    private readonly TextWriter _log;
    private readonly object _lock = new();
    private readonly ManualResetEventSlim _stopReplySent = new(false);
    private readonly ManualResetEventSlim _stopRequested = new(false);
    private readonly Stopwatch _sinceExec;
    private VirtualMachine? _machine;
    /// <summary>
    /// The running machine's display (docs/display.md), or null: none configured, or no machine right now. A guest
    /// reboot builds a new machine and so a new display: viewers compare the reference on every poll.
    /// </summary>
    public Devices.Display.BochsDisplay? Display { get { lock (_lock) return _machine?.Display; } }
    private VmExit? _lastExit;
    private int _boots;
    private RotatingLogFile? _serialFile;
    private Stream? _stdout;
    private ControlServer? _control;
    private Vnc.VncServer? _vnc;
    private bool _stopViaControl;

    // The configuration as started, as a snapshot's config.json: only snapshots and migrations need it, so it is
    // written then, not at start-up (System.Text.Json's first use builds its metadata: ~1.5 ms before the guest ran).
    private string? _configJson;
    private string ConfigJson => _configJson ??= VmmConfigJson.For(_config.Configuration);
    private readonly VmmRestore? _restore;

    public ConsoleHub Console { get; }

    /// <param name="configJson">The configuration as started (a snapshot's config.json); null writes it from <paramref name="config"/> when a snapshot or migration first needs it.</param>
    /// <param name="restore">Start from this snapshot instead of booting (<c>--restore</c>).</param>
    public VmmHost(VmmConfig config, TextWriter log, Stopwatch? sinceExec = null, string? configJson = null, VmmRestore? restore = null)
    {
        _config = config;
        _log = log;
        _configJson = configJson;
        _restore = restore;
        _sinceExec = sinceExec ?? Stopwatch.StartNew();
        Console = new ConsoleHub(OpenSerialSink(), startWriter: false); // started with the vCPUs (RunMachines)
    }

    /// <summary>Entry point of kvmps-vmm: parses arguments, runs the VM, returns the exit status.</summary>
    /// <param name="sandboxByDefault">Sandbox the process unless <c>--sandbox off</c> (kvmps-vmm's own Main; tests that call this in-process leave it off).</param>
    public static int Main(string[] args, TextWriter? stderr = null, bool sandboxByDefault = false)
    {
        var sinceExec = Stopwatch.StartNew();
        Diagnostics.StartupTimeline.Mark("main");
        stderr ??= System.Console.Error;
        // AppContext's class constructor runs here, before any other thread exists: NativeAOT's lock initialisation reads
        // AppContext, and a second thread running that constructor (System.Text.Json does, for its switches) while this
        // one contends a lock hangs both in the runtime's class-constructor locks (seen with a JSON warm-up on the
        // start-up thread). So the start-up thread does no JSON, and AppContext is ready before it starts.
        _ = AppContext.GetData("System.GC.Server");
        // The KVM VM is made on a thread while the arguments and a snapshot are read (Vm/EarlyKvmVm); not for the runs
        // that only print or write files.
        if (!args.Any(a => a is "--help" or "-h" or "--version" || a.StartsWith("--acpi-tables-out", StringComparison.Ordinal)))
            EarlyKvmVm.Start();
        VmmConfig config;
        VmmRestore? restore;
        Migration.MigrationEndpoint? incoming;
        string? incomingToken;
        bool sandbox;
        Sandbox.JailSettings jail;
        Sandbox.JailUser? jailUser = null;
        try
        {
            // --acpi-tables-out DIR: write the tables this configuration gives the guest, and exit (Acpi/AcpiTableDump).
            if (Acpi.AcpiTableDump.FromArgs(args, out string[] dumpArgs) is { } tablesDir)
            {
                var dumped = VmmConfig.FromArgs(dumpArgs);
                foreach (string path in Acpi.AcpiTableDump.Write(VirtualMachine.AcpiConfigFor(dumped.Machine), tablesDir)) System.Console.Out.WriteLine(path);
                return VmmExitCode.Ok;
            }
            sandbox = SandboxFromArgs(args, sandboxByDefault, out args);
            jail = Sandbox.JailSettings.FromArgs(args, out args);
            if (jail.Enabled) jailUser = Sandbox.JailUser.Resolve(jail.User!);
            restore = VmmRestore.FromArgs(args, out string[] configArgs);
            incoming = VmmIncoming.FromArgs(configArgs, out configArgs);
            incomingToken = VmmIncoming.TokenFromArgs(configArgs, out configArgs);
            if (incomingToken is not null && incoming is null) throw new VmmConfigException("--incoming-token-file needs --incoming.");
            Diagnostics.StartupTimeline.Mark("incoming");
            config = VmmConfig.FromArgs(configArgs);
            Diagnostics.StartupTimeline.Mark("config");
            Diagnostics.StartupTimeline.Mark("args");
        }
        catch (VmmHelpRequested) { System.Console.Out.Write(VmmConfig.Usage); return VmmExitCode.Ok; }
        catch (VmmVersionRequested) { System.Console.Out.WriteLine($"kvmps-vmm {Version}"); return VmmExitCode.Ok; }
        catch (VmmConfigException e) { stderr.WriteLine($"kvmps-vmm: error: {e.Message}"); return VmmExitCode.UsageError; }
        catch (State.SnapshotException e) { stderr.WriteLine($"kvmps-vmm: error: {e.Message}"); return VmmExitCode.UsageError; }
        catch (VmmResourceException e) { stderr.WriteLine($"kvmps-vmm: error: {e.Message}"); return VmmExitCode.HostResource; }
        if (PrepareJail(jail, bulkMemoryBeforeRun: restore is not null || incoming is not null, stderr, out var cgroupJoin) is { } jailRefused) return jailRefused;
        if (sandbox)
        {
            // Before any engine thread starts (docs/confinement.md, "The VMM sandbox").
            try { Sandbox.VmmSandbox.Enable(); }
            catch (Sandbox.SandboxException e) { stderr.WriteLine($"kvmps-vmm: error: the sandbox cannot be set up: {e.Message} (--sandbox off runs without it)"); return VmmExitCode.HostResource; }
            Diagnostics.StartupTimeline.Mark("sandbox");
        }
        try
        {
            using var host = new VmmHost(config, stderr, sinceExec, restore?.Snapshot.ConfigJson, restore) { Incoming = incoming, IncomingToken = incomingToken, Jail = jail, JailUser = jailUser, CgroupJoin = cgroupJoin };
            return host.Run();
        }
        catch (VmmConfigException e) { stderr.WriteLine($"kvmps-vmm: error: {e.Message}"); return VmmExitCode.UsageError; }
        catch (VmmResourceException e) { stderr.WriteLine($"kvmps-vmm: error: {e.Message}"); return VmmExitCode.HostResource; }
    }

    /// <summary>Takes <c>--sandbox on|off</c> (or <c>--sandbox=on|off</c>) out of <paramref name="args"/>.</summary>
    internal static bool SandboxFromArgs(string[] args, bool byDefault, out string[] rest)
    {
        bool sandbox = byDefault;
        var kept = new List<string>(args.Length);
        for (int i = 0; i < args.Length; i++)
        {
            string? value = null;
            if (args[i] == "--sandbox")
                value = i + 1 < args.Length ? args[++i] : throw new VmmConfigException("--sandbox needs a value (on or off).");
            else if (args[i].StartsWith("--sandbox=", StringComparison.Ordinal))
                value = args[i]["--sandbox=".Length..];
            if (value is null) { kept.Add(args[i]); continue; }
            sandbox = value switch
            {
                "on" => true,
                "off" => false,
                _ => throw new VmmConfigException($"--sandbox: '{value}' is not on or off."),
            };
        }
        rest = [.. kept];
        return sandbox;
    }

    public static string Version => typeof(VmmHost).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion?.Split('+')[0] ?? "0.0.0";

    private Devices.ByteSink OpenSerialSink()
    {
        switch (_config.Serial)
        {
            case SerialMode.None: return _ => { };
            case SerialMode.File:
                // Rotated at a size limit: a guest printing without end cannot fill the host's disk.
                try { _serialFile = new RotatingLogFile(_config.SerialPath!, _config.SerialLogMaxBytes, _config.SerialLogFiles); }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new VmmConfigException($"serial file {_config.SerialPath}: {IoErrorText.Describe(e, _config.SerialPath)}"); }
                return data => { try { _serialFile.Write(data); } catch (Exception e) when (e is IOException or UnauthorizedAccessException or ObjectDisposedException) { } };
            default:
                _stdout = System.Console.OpenStandardOutput();
                return data => { try { _stdout.Write(data); _stdout.Flush(); } catch (IOException) { } }; // on the console writer thread
        }
    }

    private Stream? _debugCon;

    /// <summary>The machine config with the debug console (port 0x402) sink from --debugcon.</summary>
    private MachineConfig MachineWithDebugCon()
    {
        if (_config.DebugCon is not { } target || _config.Machine.DebugConOutput is not null) return _config.Machine;
        try { _debugCon ??= target == "stderr" ? System.Console.OpenStandardError() : new FileStream(target, FileMode.Append, FileAccess.Write, FileShare.ReadWrite, 1); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new VmmConfigException($"debug console file {target}: {IoErrorText.Describe(e)}"); }
        var stream = _debugCon;
        return _config.Machine with { DebugConOutput = data => { try { stream.Write(data); } catch (IOException) { } } };
    }

    public int Run()
    {
        var controlSetup = EngineThreads.Launch(ThreadRole.Setup, "control-setup", SetUpSignalsAndControlSocket);
        try { return RunMachines(controlSetup); }
        finally
        {
            controlSetup.Join(); // whatever happened: the socket is then ours to remove in Dispose
            _sigterm?.Dispose();
            _sigint?.Dispose();
        }
    }

    /// <summary>
    /// From the start to KVM's first slot change (VirtualMachine.PayFirstSlotChangeInBackground): past the guest's first
    /// output. A snapshot or migration that comes earlier pays the wait in its pause, as without the warm-up.
    /// </summary>
    private static readonly TimeSpan SlotWarmupDelay = TimeSpan.FromMilliseconds(50);

    private PosixSignalRegistration? _sigterm, _sigint;
    private ExceptionDispatchInfo? _controlSetupFailure;

    /// <summary>
    /// Signal handlers, then the control socket: on a start-up thread while the main thread builds the machine (half a
    /// millisecond off a restore's start), joined before a vCPU runs or a migration stream is awaited.
    /// </summary>
    private void SetUpSignalsAndControlSocket()
    {
        try
        {
            // SIGTERM/SIGINT handlers first: once the socket answers, a client may signal the VMM, which must then stop
            // cleanly (socket removed, exit 0) rather than die by the signal's default action.
            _sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
            _sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
            if (_config.ControlSocket is { } socketPath) _control = BindControlSocket(socketPath);
            Diagnostics.StartupTimeline.Mark("socket");
            Sandbox.VmmSandbox.BuildAhead(Sandbox.SandboxRole.Vcpu, Sandbox.SandboxRole.Console);
        }
        catch (Exception e) { _controlSetupFailure = ExceptionDispatchInfo.Capture(e); }
    }

    /// <summary>Waits for <see cref="SetUpSignalsAndControlSocket"/>; its failure (a socket in use) is this start's.</summary>
    private void AwaitControlSetup(EngineThread controlSetup)
    {
        controlSetup.Join();
        _controlSetupFailure?.Throw();
        // Made as root before the jail: the jail user's, so that this VMM, and the next one a live upgrade starts (jailed
        // as the same user), can still remove the socket and take its lock. Here, on the main thread: only its filter
        // has chown, for the jail's set-up.
        if (_control is not null && _config.ControlSocket is { } path)
        {
            GiveToJailUser(Path.GetFullPath(path));
            GiveToJailUser(Path.GetFullPath(path) + ".lock");
        }
    }

    /// <summary>
    /// Serves the control socket, once jailed: no request is served as root. (A VMM receiving a VM answers status
    /// while it waits for the stream, before its jail: its accept thread started then; the pivot moved its root too.)
    /// </summary>
    private void StartServingControl() => _control?.StartAccepting();

    private int RunMachines(EngineThread controlSetup)
    {
        bool stdinPumping = false;
        List<(int Slot, DeviceConfig Config)> carried = [];
        Dictionary<int, PassedFiles>? kept = null; // a reboot's: the previous boot's open images and taps, by slot
        uint removedConfigured = _config.Machine.RemovedDeviceSlots; // configured devices removed live stay removed across reboots
        while (true)
        {
            VirtualMachine machine;
            bool restoring = _restore is not null && _boots == 0; // a reset after a restore boots afresh
            bool receiving = Incoming is not null && _boots == 0;
            if (receiving)
            {
                AwaitControlSetup(controlSetup);
                _control?.StartAccepting(); // status answers while it waits for the stream
            }
            try
            {
                // A restore leaves the configured devices the snapshot's VM had lost unopened (their images may be gone).
                if (restoring) removedConfigured |= RemovedConfiguredSlotsOf(_restore!.Snapshot);
                var builder = new MachineBuilder(ForBoot(MachineWithDebugCon() with { RemovedDeviceSlots = removedConfigured, KeptFiles = kept }, _boots), Console.Write);
                VirtualMachine? received = receiving ? ReceiveIncoming(builder) : null;
                if (receiving && received is null) return VmmExitCode.Ok; // stopped before a source connected
                machine = restoring ? builder.Restore(_restore!.Snapshot, _restore.MemoryMode) : received ?? builder.Boot();
                Diagnostics.StartupTimeline.Mark("machine");
            }
            catch (Migration.MigrationException e) { return Fail(VmmExitCode.IncomingFailed, $"receiving the VM from {Incoming!.Uri} failed: {e.Message}"); }
            catch (State.SnapshotException e) { return Fail(VmmExitCode.UsageError, e.Message); }
            catch (KvmUnavailableException e) { return Fail(VmmExitCode.KvmUnavailable, e.Message); }
            catch (BootImageException e) { return Fail(VmmExitCode.BadImage, e.Message); }
            catch (GuestMemoryException e) { return Fail(VmmExitCode.HostResource, e.Message); }
            catch (DirtyRingException e) { return Fail(VmmExitCode.KvmUnavailable, e.Message); }
            catch (ArgumentOutOfRangeException e) { return Fail(VmmExitCode.UsageError, e.Message.Split(" (Parameter")[0]); }
            catch (NativeCallException e) { return Fail(VmmExitCode.KvmUnavailable, $"KVM refused to set up the VM: {e.Message}"); }
            catch (DeviceConfigException e) { return Fail(VmmExitCode.HostResource, e.Message); } // a tap, bridge or socket the device needs
            catch (Devices.Passthrough.PassthroughException e) { return Fail(VmmExitCode.HostResource, e.Message); } // a vfio-user server or VFIO device that failed or refused
            catch (Exception e) { return Fail(VmmExitCode.InternalError, $"creating the VM failed: {e.GetType().Name}: {e.Message}"); }

            // Devices hot-plugged into the previous boot stay plugged across a guest reboot, as on real hardware.
            foreach (var (slot, device) in carried)
            {
                try { machine.PlugAtBoot(device, slot, kept?.GetValueOrDefault(slot)); }
                catch (Exception e) { _log.WriteLine($"kvmps-vmm: the hot-plugged {device.Type} device {PciAddresses.Format(slot)} is dropped at the reboot: {e.Message}"); }
            }
            carried = [];
            CloseUntaken(kept);
            kept = null;
            lock (_lock) { _machine = machine; _boots++; }
            if (_boots == 1 && machine.DirtyRingEntries is { } ring)
            {
                _log.WriteLine($"kvmps-vmm: dirty ring: {ring} entries per vCPU");
                // Measured: PVM's emulation of guest kernel code runs past a full ring, and KVM drops the entries.
                if (Kvm.IsNestedThroughPvm && ring < DirtyRings.MaxEntries)
                    _log.WriteLine($"kvmps-vmm: warning: on this nested PVM host a dirty ring smaller than {DirtyRings.MaxEntries} entries can lose dirty pages (KVM warns in kvm_dirty_ring_push); use {DirtyRings.MaxEntries} or the bitmap");
            }
            // display.get reports the VNC server's listeners and viewers; each boot builds a new display object.
            if (machine.Display is { } display) display.VncStatus = VncStatusForDisplay;
            AwaitControlSetup(controlSetup);
            if (StartVnc() is { } vncFailed) return vncFailed;
            // Everything the first machine opens is open (and, unless left for later, the VMM is in its cgroup): jail
            // the VMM before a vCPU runs guest code.
            if (AwaitCgroupJoinBeforeRun() is { } cgroupFailed) return cgroupFailed;
            if (EnterJail() is { } jailFailed) return jailFailed;
            bool movingIntoCgroup = CgroupJoin is { Started: false };
            if (!movingIntoCgroup) StartServingControl();
            if (_stopRequested.IsSet) machine.Stop("stopped before start");
            else machine.Start(paused: (restoring && _restore!.Paused) || (receiving && _receiver!.SourcePaused));
            Diagnostics.StartupTimeline.Mark("started");
            if (!movingIntoCgroup) Diagnostics.StartupTimeline.Report(_log);
            if (restoring)
                _log.WriteLine($"kvmps-vmm: restored {_restore!.Snapshot.Directory} ({(_restore.MemoryMode == RestoreMemoryMode.Private ? "memory mapped" : "memory copied")}); " +
                    $"{(_restore.Paused ? "paused" : "running")} {_sinceExec.Elapsed.TotalMilliseconds:0.0} ms after exec");
            // Threads the guest does not wait for start after the vCPUs, which get the first clone. Output is buffered
            // until the writer runs (so it follows the lines above); input waits in stdin, and the UART holds it until
            // the guest opens its receiver anyway.
            Console.StartWriter();
            if (_config.Serial == SerialMode.Stdio && !stdinPumping) { StartStdinPump(); stdinPumping = true; }
            if (movingIntoCgroup)
            {
                if (MoveIntoCgroupWhileRunning(machine) is { } moveFailed) return moveFailed;
                StartServingControl();
                Diagnostics.StartupTimeline.Report(_log);
            }
            if (receiving && ConfirmIncoming(machine) is { } failed) return failed;
            if (receiving) TakeOverControlSocket();

            // Once the guest is under way, KVM's first slot change is paid beside it; start-up is over once the VM has
            // run a moment: its code and data leave this process's page tables.
            if (!machine.Exited.Wait(SlotWarmupDelay)) machine.PayFirstSlotChangeInBackground();
            if (!machine.Exited.Wait(StartupPages.Delay - SlotWarmupDelay)) StartupPages.ReleaseThenWait(machine);
            VmExit exit = machine.Exited.GetAwaiter().GetResult();
            machine.JoinVcpus(TimeSpan.FromSeconds(5));
            lock (_lock) _lastExit = exit;
            if (exit.Cpu is { } cpu) _log.WriteLine($"kvmps-vmm: {exit.Reason}; RIP=0x{cpu.Rip:x} RSP=0x{cpu.Rsp:x} CR0=0x{cpu.Cr0:x} CR3=0x{cpu.Cr3:x} CR4=0x{cpu.Cr4:x} EFER=0x{cpu.Efer:x}");

            switch (exit.Kind)
            {
                case VmExitKind.Reset when _config.Machine.OnReset == ResetPolicy.Reboot && !_stopRequested.IsSet:
                    _log.WriteLine($"kvmps-vmm: {exit.Reason}: rebooting");
                    carried = [.. machine.HotpluggedDevices.Select(d => (d.Slot, d.Config))];
                    kept = KeepFilesForReboot(machine);
                    removedConfigured = machine.RemovedConfiguredSlots;
                    lock (_lock) _machine = null;
                    machine.Dispose();
                    continue;
                case VmExitKind.Crashed:
                    if (_config.EffectiveCrashPolicy == CrashPolicy.Stay && !_stopRequested.IsSet)
                    {
                        _log.WriteLine("kvmps-vmm: the VM crashed; staying up for inspection (stop it over the control socket)");
                        _stopRequested.Wait();
                    }
                    FinishStopReply();
                    return VmmExitCode.GuestCrashed;
                case VmExitKind.Migrated:
                    FinishStopReply();
                    return VmmExitCode.Migrated;
                case VmExitKind.DebugExit:
                    FinishStopReply();
                    return VmmExitCode.ForDebugExit(exit.DebugExitValue ?? 0);
                default:
                    FinishStopReply();
                    return VmmExitCode.Ok;
            }
        }
    }

    /// <summary>
    /// The configured slots a snapshot's VM had lost (record <c>pci-removed-configured</c>), limited to the slots this
    /// configuration can lose: the record itself is checked, naming it, when the machine restores it.
    /// </summary>
    private uint RemovedConfiguredSlotsOf(State.LoadedSnapshot snapshot)
    {
        var record = snapshot.Records.FirstOrDefault(r => r.Name == RemovedConfiguredDevicesState.Name);
        if (record is null || record.Data.Length < 4) return 0;
        return System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(record.Data) & ConfiguredDeviceSlots.Removable(_config.Machine.Devices);
    }

    private int Fail(int code, string message)
    {
        _log.WriteLine($"kvmps-vmm: error: {message}");
        return code;
    }

    private void FinishStopReply()
    {
        Console.Flush(TimeSpan.FromSeconds(2)); // the guest's last words reach stdout or the serial file before exit
        // A 'stop' over the control socket replies once the VM is down; let that reply go out before we exit.
        if (_stopViaControl) _stopReplySent.Wait(TimeSpan.FromSeconds(2));
    }

    private void OnSignal(PosixSignalContext context)
    {
        context.Cancel = true;
        _stopRequested.Set();
        lock (_lock) _machine?.Stop($"stopped by {context.Signal}");
    }

    private void StartStdinPump()
    {
        EngineThreads.Launch(ThreadRole.Console, "stdin", () =>
        {
            using var stdin = System.Console.OpenStandardInput();
            var buffer = new byte[1024];
            while (true)
            {
                int n;
                try { n = stdin.Read(buffer); } catch (Exception) { return; }
                if (n <= 0) return;
                try { ConsoleInput(buffer.AsSpan(0, n)); }
                catch (Exception) { /* the VM went away between boots: this input is lost, the VMM goes on */ }
            }
        }, 128 * 1024);
    }

    public void ConsoleInput(ReadOnlySpan<byte> data)
    {
        VirtualMachine? m;
        lock (_lock) m = _machine;
        m?.Serial.EnqueueInput(data);
    }

    private VirtualMachine RequireMachine()
    {
        lock (_lock) return _machine ?? throw new InvalidOperationException("the VM is not running (it is between boots or was never created)");
    }

    public void Pause()
    {
        if (!RequireMachine().Pause(TimeSpan.FromSeconds(5))) throw new ControlProtocolException(ControlErrorCodes.Timeout, "the vCPUs did not stop within 5 s");
    }

    public void Resume() => RequireMachine().Resume();

    public void CheckConsoleAttach()
    {
        var state = RequireMachine().State;
        if (state is not (VmState.Running or VmState.Paused)) throw new InvalidOperationException($"no console to attach: the VM is {state}");
    }

    public StopReply Stop(StopRequest request)
    {
        bool graceful = request.Graceful;
        var timeout = TimeSpan.FromMilliseconds(request.TimeoutMs);
        VirtualMachine? machine;
        lock (_lock) { machine = _machine; _stopViaControl = true; }
        _stopRequested.Set();
        bool forced = false, pressed = false;
        // Why the stop ended as it did, so the caller can report the truth (no "timed out" when nothing waited).
        string outcome = StopOutcomes.NotRunning;
        var clock = Stopwatch.StartNew();
        if (machine is not null && !machine.Exited.IsCompleted)
        {
            if (!graceful)
                outcome = StopOutcomes.Forced;
            else if (machine.State != VmState.Running)
                outcome = machine.State == VmState.Paused ? StopOutcomes.Paused : StopOutcomes.NotRunning;
            else if (!machine.Pm.PowerButtonEnabled)
                outcome = StopOutcomes.NoAcpi;
            else
            {
                pressed = true;
                machine.Pm.PressPowerButton();
                outcome = machine.Exited.Wait(timeout) ? StopOutcomes.PoweredOff : StopOutcomes.TimedOut;
            }
            forced = outcome != StopOutcomes.PoweredOff && !machine.Exited.IsCompleted;
            if (forced)
                machine.Stop(outcome switch
                {
                    StopOutcomes.TimedOut => $"the guest did not power off within {timeout.TotalSeconds:0.###} s of the ACPI power button; stopped by force",
                    StopOutcomes.NoAcpi => "the guest does not handle ACPI power-button requests; stopped by force",
                    StopOutcomes.Paused => "the VM was paused; stopped by force",
                    _ => "stopped by request",
                });
            machine.Exited.Wait(TimeSpan.FromSeconds(5));
        }
        return new StopReply
        {
            Forced = forced,
            PowerButton = pressed,
            Outcome = outcome,
            WaitedMs = pressed ? (long)clock.Elapsed.TotalMilliseconds : 0,
            State = machine?.State.ToString() ?? VmStateNames.Stopped,
        };
    }

    public void StopReplySent() => _stopReplySent.Set();

    /// <summary>
    /// The machine for power-on number <paramref name="boots"/> (0 = the first): boot_once is for the first power-on
    /// only, so the machine a guest reboot builds (its fw_cfg "bootorder" rewritten) boots by boot_order.
    /// </summary>
    public static MachineConfig ForBoot(MachineConfig machine, int boots) => boots == 0 ? machine : machine with { BootOnce = null };

    public SnapshotCreateReply CreateSnapshot(SnapshotCreateRequest request)
    {
        VirtualMachine? machine;
        lock (_lock) machine = _machine;
        RefuseDuringMigration(SnapshotCreateRequest.Name);
        return SnapshotRequest.Create(machine ?? RequireMachine(), request, ConfigJson, Console);
    }

    public void Dispose()
    {
        CgroupJoin?.CloseUnstarted();
        _vnc?.Dispose();
        _control?.Dispose();
        lock (_lock) { _machine?.Dispose(); _machine = null; }
        Console.Flush(TimeSpan.FromSeconds(2));
        Console.Dispose();
        _serialFile?.Dispose();
        if (_debugCon is FileStream) _debugCon.Dispose();
    }
}
