using System.Reflection;
using KvmPS.Management.Definitions;
using KvmPS.Management.DesiredState;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.SerialConsole;
using KvmPS.Management.Store;
using KvmPS.Management.Vmm;

namespace KvmPS.Cli;

/// <summary>A command-line mistake: printed with a pointer to --help, exit status 2.</summary>
internal sealed class UsageException(string message) : Exception(message);

/// <summary>
/// The kvmps command line. Streams and the manager are injected so tests run it in-process; <see cref="Program"/>
/// wires it to the console and the store at <c>$KVMPS_HOME</c> (or the default location, see VmStoreLocation).
/// </summary>
public sealed class CliApp
{
    private readonly Func<VmManager> _managerFactory;
    private VmManager? _manager;

    public CliApp(TextReader input, TextWriter output, TextWriter error, Func<VmManager>? managerFactory = null)
    {
        In = input;
        Out = output;
        Err = error;
        _managerFactory = managerFactory ?? (() => VmManager.OpenDefault());
    }

    internal TextReader In { get; }
    internal TextWriter Out { get; }
    internal TextWriter Err { get; }
    internal VmManager Manager => _manager ??= _managerFactory();

    /// <summary>The environment (KVMPS_HOST, KVMPS_SSH...); tests replace it.</summary>
    internal Func<string, string?> GetEnvironment { get; init; } = Environment.GetEnvironmentVariable;

    /// <summary>The host's PCI functions, from the sysfs tree KVMPS_SYSFS_ROOT names (tests' fake one) or /sys.</summary>
    internal KvmPS.Management.HostDevices.PciHostDevices PciDevices() => HostSriovOutput.PciDevices(GetEnvironment);

    private Reconciler NewReconciler() => new(Manager, sriov: new KvmPS.Management.HostDevices.HostSriov(PciDevices(), KvmPS.Management.HostDevices.SysfsWriter.Instance));

    public static string Version =>
        typeof(CliApp).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "0.0.0";

    public int Run(string[] args)
    {
        try
        {
            return RemoteHostCommand.TryRun(this, args) ?? RemoteManifestCommand.TryRun(this, args) ?? Dispatch(new ArgReader(args));
        }
        catch (UsageException e)
        {
            Err.WriteLine($"kvmps: {e.Message}");
            Err.WriteLine("Run 'kvmps --help' for usage.");
            return ExitCodes.Usage;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            var code = ExitCodeFor(e);
            Err.WriteLine($"kvmps: {e.Message}");
            return code;
        }
        finally
        {
            Out.Flush();
            Err.Flush();
        }
    }

    internal static int ExitCodeFor(Exception e) => e switch
    {
        DesiredStateException or DscInputException => ExitCodes.ManifestError,
        VmNotFoundException => ExitCodes.VmNotFound,
        KvmPS.Management.Snapshots.SnapshotMetadataCorruptException => ExitCodes.Environment,
        VmAlreadyExistsException => ExitCodes.OperationFailed, // a name conflict, not a broken store
        IsoImageException => ExitCodes.OperationFailed, // a wrong ISO is the caller's input, not a broken store
        VmmBinaryNotFoundException or StoreLockTimeoutException or VmStoreException or UnauthorizedAccessException => ExitCodes.Environment,
        _ => ExitCodes.OperationFailed,
    };

    internal int Dispatch(ArgReader args)
    {
        var verb = args.Next();
        switch (verb)
        {
            case null:
                Out.Write(HelpText.Main);
                return ExitCodes.Usage;
            case "-h" or "--help" or "help":
                var topic = args.Next();
                Out.Write(topic is null ? HelpText.Main : HelpText.For(topic) ?? throw new UsageException($"no help for '{topic}'"));
                return ExitCodes.Ok;
            case "--version" or "version":
                Out.WriteLine($"kvmps {Version}");
                return ExitCodes.Ok;
            case "apply": return Apply(args);
            case "plan": return Plan(args);
            case "test": return Test(args);
            case "get": return Get(args);
            case "export": return new ExportCommand(this).Run(args);
            case "vm": return Vm(args);
            case "dsc": return new DscCommand(this).Run(args);
            case "autostart": return Autostart(args);
            case "pool": return new PoolCommands(this).Pool(args);
            case "vol": return new PoolCommands(this).Vol(args);
            case "net": return new NetCommands(this).Net(args);
            case "host": return new HostCommands(this).Host(args);
            default:
                throw new UsageException($"unknown command '{verb}'");
        }
    }

    // ---- desired state ---------------------------------------------------------------------------------

    private DesiredHostState ReadManifests(ArgReader args, string verb, params string[] flags)
    {
        var options = args.Parse(flags);
        if (options.Help)
            throw new HelpRequested(verb);
        if (options.Positional.Count == 0)
            throw new UsageException($"{verb}: give at least one manifest file (kvmps {verb} FILE...)");
        _options = options;
        // "-": one manifest on stdin, as 'kvmps apply FILE' sends a manifest naming its HostName (docs/remote.md).
        if (options.Positional is ["-"])
            return DesiredStateReader.Parse(In.ReadToEnd(), "<stdin>", Directory.GetCurrentDirectory(), hostNameAllowed: true);
        return DesiredStateReader.ReadFiles(options.Positional);
    }

    private ParsedArgs _options = ParsedArgs.Empty;

    internal int WithHelp(string verb, Func<int> body)
    {
        try
        {
            return body();
        }
        catch (HelpRequested)
        {
            Out.Write(HelpText.For(verb));
            return ExitCodes.Ok;
        }
    }

    private int Apply(ArgReader args) => WithHelp("apply", () =>
    {
        var desired = ReadManifests(args, "apply", "--what-if", "--json");
        var json = _options.Has("--json");
        var reconciler = NewReconciler();
        if (_options.Has("--what-if"))
            return WritePlan(reconciler.Plan(desired), json, whatIf: true);

        var progress = json ? null : new SynchronousProgress(p =>
        {
            var step = $"[{p.Step}/{p.StepCount}]";
            Out.WriteLine(p.Stage switch
            {
                ProgressStage.StepStarted => $"{step} {p.Status} ...",
                ProgressStage.StepDone => $"{step} done: {p.Status}",
                _ => $"{step} FAILED: {p.Status}",
            });
            Out.Flush();
        });
        var result = reconciler.Set(desired, progress);
        if (json)
        {
            Out.WriteLine(CliOutput.Json(w =>
            {
                w.WriteStartObject();
                w.WriteBoolean("succeeded", result.Succeeded);
                w.WriteBoolean("changed", result.Changed);
                w.WriteStartArray("results");
                foreach (var r in result.Results)
                {
                    w.WriteStartObject();
                    w.WriteString("kind", r.Action.Kind.ToString());
                    w.WriteString("vmName", r.Action.VmName);
                    w.WriteString("description", r.Action.Description);
                    w.WriteString("status", r.Status.ToString());
                    w.WriteString("message", r.Message);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteStartArray("warnings");
                foreach (var warning in result.Plan.Warnings)
                    w.WriteStringValue(warning);
                w.WriteEndArray();
                w.WriteEndObject();
            }));
        }
        else
        {
            foreach (var warning in result.Plan.Warnings)
                Err.WriteLine($"kvmps: warning: {warning}");
            if (result.Plan.IsEmpty)
                Out.WriteLine("Nothing to do: the host is in the desired state.");
            else if (result.Succeeded)
                Out.WriteLine($"Applied {result.Results.Count} step(s).");
            else
            {
                var notRun = result.Results.Count(r => r.Status == ReconcileActionStatus.NotRun);
                Out.WriteLine($"Apply stopped at a failed step; {notRun} step(s) not run. Fix the cause and run 'kvmps apply' again to continue.");
            }
        }
        if (result.Failure is { } failure)
        {
            Err.WriteLine($"kvmps: {failure.Action.Description} failed: {failure.Message}");
            return failure.Error is { } e && ExitCodeFor(e) == ExitCodes.Environment ? ExitCodes.Environment : ExitCodes.OperationFailed;
        }
        return ExitCodes.Ok;
    });

    private int Plan(ArgReader args) => WithHelp("plan", () =>
    {
        var desired = ReadManifests(args, "plan", "--json");
        return WritePlan(NewReconciler().Plan(desired), _options.Has("--json"), whatIf: false);
    });

    private int WritePlan(ReconcilePlan plan, bool json, bool whatIf)
    {
        if (json)
        {
            Out.WriteLine(CliOutput.Json(w =>
            {
                w.WriteStartObject();
                CliOutput.WritePlan(w, plan);
                w.WriteEndObject();
            }));
            return ExitCodes.Ok;
        }
        foreach (var warning in plan.Warnings)
            Err.WriteLine($"kvmps: warning: {warning}");
        if (plan.IsEmpty)
        {
            Out.WriteLine("Nothing to do: the host is in the desired state.");
            return ExitCodes.Ok;
        }
        var prefix = whatIf ? "What if: " : "";
        for (var i = 0; i < plan.Actions.Count; i++)
            Out.WriteLine($"{prefix}{i + 1,3}. {plan.Actions[i].Kind,-18} {plan.Actions[i].Description}");
        Out.WriteLine($"{plan.Actions.Count} step(s){(whatIf ? "; nothing was changed" : "")}.");
        return ExitCodes.Ok;
    }

    private int Test(ArgReader args) => WithHelp("test", () =>
    {
        var desired = ReadManifests(args, "test", "--detailed", "--json", "--quiet");
        var drifts = NewReconciler().Test(desired);
        if (_options.Has("--json"))
        {
            Out.WriteLine(CliOutput.Json(w =>
            {
                w.WriteStartObject();
                w.WriteBoolean("inDesiredState", drifts.Count == 0);
                w.WriteStartArray("drift");
                foreach (var d in drifts)
                    CliOutput.WriteDrift(w, d);
                w.WriteEndArray();
                w.WriteEndObject();
            }));
        }
        else if (!_options.Has("--quiet"))
        {
            Out.WriteLine(drifts.Count == 0 ? "True" : "False");
            if (_options.Has("--detailed") && drifts.Count > 0)
                CliOutput.Table(Out, new[] { "VM", "PROPERTY", "EXPECTED", "ACTUAL" },
                    drifts.Select(d => (IReadOnlyList<string>)new[] { d.VmName, d.Property, d.Expected ?? "-", d.Actual ?? "-" }));
        }
        return drifts.Count == 0 ? ExitCodes.Ok : ExitCodes.Drift;
    });

    private int Get(ArgReader args) => WithHelp("get", () =>
    {
        var desired = ReadManifests(args, "get", "--json");
        var status = NewReconciler().Get(desired);
        if (_options.Has("--json"))
        {
            Out.WriteLine(CliOutput.Json(w =>
            {
                w.WriteStartObject();
                w.WriteBoolean("inDesiredState", status.InDesiredState);
                w.WriteStartArray("vms");
                foreach (var vm in status.Vms)
                {
                    w.WriteStartObject();
                    w.WriteString("name", vm.Name);
                    w.WriteString("ensure", vm.Desired.Ensure.ToString());
                    CliOutput.WriteNullable(w, "desiredState", vm.Desired.State?.ToString());
                    w.WriteBoolean("exists", vm.Exists);
                    w.WriteBoolean("inDesiredState", vm.InDesiredState);
                    w.WritePropertyName("actual");
                    if (vm.Actual is { } actual)
                        CliOutput.WriteVm(w, actual);
                    else
                        w.WriteNullValue();
                    w.WriteStartArray("drift");
                    foreach (var d in vm.Drifts)
                        CliOutput.WriteDrift(w, d);
                    w.WriteEndArray();
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                HostSriovOutput.WriteJson(w, status);
                w.WriteStartArray("unmanaged");
                foreach (var vm in status.Unmanaged)
                    CliOutput.WriteVm(w, vm);
                w.WriteEndArray();
                w.WriteEndObject();
            }));
            return ExitCodes.Ok;
        }
        CliOutput.Table(Out, new[] { "NAME", "ENSURE", "WANTED", "STATE", "VCPUS", "MEMORY", "IN-DESIRED-STATE" },
            status.Vms.Select(vm => (IReadOnlyList<string>)new[]
            {
                vm.Name,
                vm.Desired.Ensure.ToString(),
                vm.Desired.Ensure == VmEnsure.Absent ? "-" : vm.Desired.State?.ToString() ?? "(any)",
                vm.Actual?.State.ToString() ?? "(absent)",
                vm.Actual is { } a ? (a.Live?.Vcpus ?? a.Definition.Vcpus.Count).ToString() : "-",
                vm.Actual is { } b ? CliOutput.Bytes(b.Definition.Memory.StartupBytes) : "-",
                vm.InDesiredState ? "yes" : "no",
            }));
        HostSriovOutput.WriteTable(Out, status);
        if (status.Unmanaged.Count > 0)
            Out.WriteLine($"Not in the manifest: {string.Join(", ", status.Unmanaged.Select(v => $"{v.Name} ({v.State})"))}");
        return ExitCodes.Ok;
    });

    // ---- vm ---------------------------------------------------------------------------------------------

    private int Vm(ArgReader args)
    {
        var sub = args.Next();
        return sub switch
        {
            null => throw new UsageException("vm: give a subcommand: list, start, stop, restart, suspend, resume, remove, console, setvcpus, setmem, setlimits, attach-disk, detach-disk, attach-nic, detach-nic, attach-iso, eject-iso, attach-pci, detach-pci, boot-order, vnc, screenshot, addresses, snapshot, save, export, import, upgrade, migrate"),
            "-h" or "--help" => WriteHelp("vm"),
            "list" or "ls" => WithHelp("vm list", () => VmList(args.Parse("--json"))),
            "start" => WithHelp("vm start", () => VmStart(args.Parse("--json"))),
            "stop" => WithHelp("vm stop", () => VmStop(args.Parse("--force", "--json"))),
            "restart" or "reboot" => WithHelp("vm restart", () => VmRestart(args.Parse("--force", "--json"))),
            "suspend" => WithHelp("vm suspend", () => VmSuspendOrResume(args.Parse("--json"), suspend: true)),
            "resume" => WithHelp("vm resume", () => VmSuspendOrResume(args.Parse("--json"), suspend: false)),
            "remove" or "rm" => WithHelp("vm remove", () => VmRemove(args.Parse("--force", "--keep-disks", "--json"))),
            "console" => WithHelp("vm console", () => VmConsole(args.Parse("--no-replay"))),
            "setvcpus" => WithHelp("vm setvcpus", () => new VmLiveCommands(this).SetVcpus(args.Parse(["--live", "--config", "--json"], ["--maximum"]))),
            "setmem" => WithHelp("vm setmem", () => new VmLiveCommands(this).SetMem(args.Parse(["--live", "--config", "--json"], ["--minimum", "--maximum"]))),
            "setlimits" => WithHelp("vm setlimits", () => new VmLiveCommands(this).SetLimits(args.Parse(["--live", "--config", "--json"], ["--cpu-weight", "--cpu-maximum-percent", "--vmm-overhead-limit"]))),
            "attach-disk" => WithHelp("vm attach-disk", () => new VmLiveCommands(this).AttachDisk(args.Parse(["--live", "--config", "--read-only", "--json"], ["--size", "--format", "--backing", "--pool"]))),
            "detach-disk" => WithHelp("vm detach-disk", () => new VmLiveCommands(this).DetachDisk(args.Parse(["--live", "--config", "--json"], ["--timeout"]))),
            "attach-nic" => WithHelp("vm attach-nic", () => new VmLiveCommands(this).AttachNic(args.Parse(["--live", "--config", "--json"], ["--tap", "--bridge", "--network", "--mac", "--sriov-vf", "--vlan"]))),
            "detach-nic" => WithHelp("vm detach-nic", () => new VmLiveCommands(this).DetachNic(args.Parse(["--live", "--config", "--json"], ["--timeout"]))),
            "attach-iso" => WithHelp("vm attach-iso", () => new VmLiveCommands(this).AttachIso(args.Parse(["--live", "--config", "--json"], ["--pool", "--drive"]))),
            "eject-iso" => WithHelp("vm eject-iso", () => new VmLiveCommands(this).EjectIso(args.Parse(["--live", "--config", "--json"], ["--drive"]))),
            "attach-pci" => WithHelp("vm attach-pci", () => new VmLiveCommands(this).AttachPci(args.Parse(["--json"], ["--host", "--vfio-user"]))),
            "detach-pci" => WithHelp("vm detach-pci", () => new VmLiveCommands(this).DetachPci(args.Parse(["--json"], ["--host", "--vfio-user"]))),
            "boot-order" => WithHelp("vm boot-order", () => new VmLiveCommands(this).BootOrder(args.Parse(["--clear-once", "--json"], ["--once"]))),
            "vnc" => WithHelp("vm vnc", () => new VmLiveCommands(this).Vnc(args.Parse("--json"))),
            "screenshot" => WithHelp("vm screenshot", () => new VmLiveCommands(this).Screenshot(args.Parse(["--json"], ["--timeout"]))),
            "snapshot" => new VmSnapshotCommands(this).Snapshot(args),
            "save" => WithHelp("vm save", () => new VmSnapshotCommands(this).Save(args.Parse("--json"))),
            "export" => WithHelp("vm export", () => new VmSnapshotCommands(this).Export(args.Parse("--json"))),
            "import" => WithHelp("vm import", () => new VmSnapshotCommands(this).Import(args.Parse("--copy", "--new-id", "--json"))),
            "upgrade" => WithHelp("vm upgrade", () => new VmUpgradeCommand(this).Run(args.Parse(["--all", "--json"], ["--timeout"]))),
            "migrate" => WithHelp("vm migrate", () => new VmMigrateCommand(this).Migrate(args.Parse(["--auto-converge", "--include-storage", "--tunnel", "--json", "--progress"], ["--to", "--identity", "--downtime", "--bandwidth", "--timeout", "--migration-address"]))),
            "addresses" => WithHelp("vm addresses", () => new NetCommands(this).VmAddresses(args.Parse("--json"))),
            "receive" => new VmMigrateCommand(this).Receive(args.Parse(["--with-token", "--tcp"], ["--timeout", "--include-storage", "--migration-address"])), // hidden: the destination's end of 'vm migrate'
            _ => throw new UsageException($"vm: unknown subcommand '{sub}'"),
        };
    }

    private int WriteHelp(string topic)
    {
        Out.Write(HelpText.For(topic));
        return ExitCodes.Ok;
    }

    private static string OneName(ParsedArgs options, string verb)
    {
        if (options.Help)
            throw new HelpRequested(verb);
        if (options.Positional.Count != 1)
            throw new UsageException($"{verb}: give exactly one VM name (kvmps {verb} NAME)");
        return options.Positional[0];
    }

    private int VmList(ParsedArgs options)
    {
        if (options.Help)
            throw new HelpRequested("vm list");
        if (options.Positional.Count > 0)
            throw new UsageException("vm list: takes no arguments");
        var vms = Manager.List();
        if (options.Has("--json"))
        {
            Out.WriteLine(CliOutput.Json(w =>
            {
                w.WriteStartArray();
                foreach (var vm in vms)
                    CliOutput.WriteVm(w, vm);
                w.WriteEndArray();
            }));
            return ExitCodes.Ok;
        }
        if (vms.Count == 0)
        {
            Out.WriteLine($"No VMs in the store at {Manager.Store.Root}.");
            return ExitCodes.Ok;
        }
        CliOutput.Table(Out, CliOutput.VmHeaders, vms.Select(CliOutput.VmRow));
        return ExitCodes.Ok;
    }

    private int VmStart(ParsedArgs options)
    {
        var name = OneName(options, "vm start");
        var info = Manager.Start(name);
        return WriteVmResult(options, info, info.State is VmState.Running or VmState.Paused
            ? $"VM '{name}' is {info.State} (pid {info.Pid})."
            : $"VM '{name}' is {info.State} right after starting{(info.StateReason is null ? "" : ": " + info.StateReason)}.");
    }

    private int VmStop(ParsedArgs options)
    {
        var name = OneName(options, "vm stop");
        var result = Manager.Stop(name, force: options.Has("--force"));
        if (result.IsWarning && options.Has("--json"))
            Err.WriteLine($"kvmps: warning: {result.Message}");
        return WriteVmResult(options, Manager.Get(name), result.Message);
    }

    private int VmRestart(ParsedArgs options)
    {
        var name = OneName(options, "vm restart");
        var info = Manager.Restart(name, force: options.Has("--force"));
        return WriteVmResult(options, info, info.State is VmState.Running or VmState.Paused
            ? $"VM '{name}' restarted: {info.State} (pid {info.Pid})."
            : $"VM '{name}' is {info.State} right after restarting{(info.StateReason is null ? "" : ": " + info.StateReason)}.");
    }

    private int VmSuspendOrResume(ParsedArgs options, bool suspend)
    {
        var name = OneName(options, suspend ? "vm suspend" : "vm resume");
        var info = suspend ? Manager.Suspend(name) : Manager.Resume(name);
        return WriteVmResult(options, info, $"VM '{name}' is {info.State}.");
    }

    private int VmRemove(ParsedArgs options)
    {
        var name = OneName(options, "vm remove");
        var result = Manager.Remove(name, options.Has("--force"), deleteDisks: !options.Has("--keep-disks"));
        if (options.Has("--json"))
        {
            Out.WriteLine(CliOutput.Json(w =>
            {
                w.WriteStartObject();
                w.WriteString("name", result.Name);
                w.WriteBoolean("wasRunning", result.WasRunning);
                CliOutput.WriteNullable(w, "retainedDisksDirectory", result.RetainedDisksDirectory);
                w.WriteStartArray("removedDiskSnapshots");
                foreach (var disk in result.RemovedDiskSnapshots)
                {
                    w.WriteStartObject();
                    w.WriteString("path", disk.Path);
                    w.WriteString("snapshotId", disk.SnapshotId);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteEndObject();
            }));
        }
        else
        {
            Out.WriteLine($"VM '{name}' removed{(result.RetainedDisksDirectory is { } kept ? $"; its disks are kept in {kept}" : "")}"
                + (result.RemovedDiskSnapshots.Count > 0 ? $"; {result.RemovedDiskSnapshots.Count} checkpoint snapshot(s) deleted from the disks that stay." : "."));
        }
        return ExitCodes.Ok;
    }

    internal int WriteVmResult(ParsedArgs options, VmInfo info, string message)
    {
        if (options.Has("--json"))
            Out.WriteLine(CliOutput.Json(w => CliOutput.WriteVm(w, info)));
        else
            Out.WriteLine(message);
        return ExitCodes.Ok;
    }

    private int VmConsole(ParsedArgs options)
    {
        var name = OneName(options, "vm console");
        using var session = ConsoleSession.Open(Manager, name, replay: !options.Has("--no-replay"));
        Err.WriteLine(session.ConnectedMessage);
        Err.Flush();
        ConsoleSessionEnd end;
        using (var input = ConsoleInput.FromCurrentProcess())
            end = session.Run(System.Console.OpenStandardOutput(), input);
        Err.WriteLine();
        Err.WriteLine(session.EndMessage(end));
        return ExitCodes.Ok;
    }

    // ---- autostart ---------------------------------------------------------------------------------------

    private int Autostart(ArgReader args) => WithHelp("autostart", () =>
    {
        var options = args.Parse("--json");
        if (options.Help)
            throw new HelpRequested("autostart");
        if (options.Positional.Count > 0)
            throw new UsageException("autostart: takes no arguments");
        var results = Manager.Autostart();
        if (options.Has("--json"))
        {
            Out.WriteLine(CliOutput.Json(w =>
            {
                w.WriteStartArray();
                foreach (var r in results)
                {
                    w.WriteStartObject();
                    w.WriteString("kind", r.Kind.ToString());
                    w.WriteString("name", r.Name);
                    w.WriteString("outcome", r.Outcome.ToString());
                    CliOutput.WriteNullable(w, "state", r.Info?.State.ToString());
                    CliOutput.WriteNullable(w, "error", r.Error?.Message);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
            }));
        }
        else
        {
            if (!results.Any(r => r.Kind == AutostartResourceKind.Vm))
                Out.WriteLine("No VMs have Autostart set.");
            foreach (var r in results)
                Out.WriteLine((r.Kind, r.Outcome) switch
                {
                    (_, AutostartOutcome.Failed) => $"{Label(r)}: FAILED: {r.Error?.Message}",
                    (AutostartResourceKind.Pool, AutostartOutcome.Started) => $"{Label(r)}: folder re-created",
                    (AutostartResourceKind.Pool, _) => $"{Label(r)}: ready",
                    (AutostartResourceKind.Network, AutostartOutcome.Started) => $"{Label(r)}: started",
                    (AutostartResourceKind.Network, _) => $"{Label(r)}: already active",
                    (_, AutostartOutcome.Started) => $"{r.Name}: started ({r.Info?.State})",
                    _ => $"{r.Name}: already running",
                });
        }
        return results.Any(r => r.Outcome == AutostartOutcome.Failed) ? ExitCodes.OperationFailed : ExitCodes.Ok;

        static string Label(AutostartResult r) => r.Kind switch
        {
            AutostartResourceKind.Pool => $"pool {r.Name}",
            AutostartResourceKind.Network => $"network {r.Name}",
            _ => r.Name,
        };
    });

    internal sealed class HelpRequested(string topic) : Exception(topic);
}

internal sealed record ParsedArgs(IReadOnlyList<string> Positional, IReadOnlySet<string> Flags, bool Help, IReadOnlyDictionary<string, string>? Values = null)
{
    public static ParsedArgs Empty { get; } = new(Array.Empty<string>(), new HashSet<string>(), false);
    public bool Has(string flag) => Flags.Contains(flag);

    /// <summary>The value given to an option that takes one (<c>--size 1G</c> or <c>--size=1G</c>); null when absent.</summary>
    public string? Value(string option) => Values is not null && Values.TryGetValue(option, out var value) ? value : null;

    /// <summary>
    /// The positional arguments, <paramref name="minimum"/> to <paramref name="maximum"/> of them; --help shows
    /// <paramref name="topic"/>, and another count is a usage error quoting <paramref name="usage"/>.
    /// </summary>
    public IReadOnlyList<string> Positionals(string topic, string usage, int minimum, int maximum)
    {
        if (Help)
            throw new CliApp.HelpRequested(topic);
        if (Positional.Count < minimum || Positional.Count > maximum)
            throw new UsageException($"{topic}: usage: kvmps {usage}");
        return Positional;
    }
}

/// <summary>Arguments after the verb: known --flags anywhere, the rest positional; "--" ends the flags.</summary>
internal sealed class ArgReader(string[] args)
{
    private int _index;

    public string? Next() => _index < args.Length ? args[_index++] : null;

    public ParsedArgs Parse(params string[] allowedFlags) => Parse(allowedFlags, []);

    /// <summary>As <see cref="Parse(string[])"/>, with options that take a value (<paramref name="valueOptions"/>: <c>--size 1G</c>, <c>--size=1G</c>).</summary>
    public ParsedArgs Parse(string[] allowedFlags, string[] valueOptions)
    {
        var positional = new List<string>();
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        var flags = new HashSet<string>(StringComparer.Ordinal);
        var help = false;
        var onlyPositional = false;
        while (Next() is { } arg)
        {
            if (!onlyPositional && arg == "--")
                onlyPositional = true;
            else if (!onlyPositional && arg is "-h" or "--help")
                help = true;
            else if (!onlyPositional && arg.StartsWith("--", StringComparison.Ordinal) && valueOptions.Contains(arg.Split('=', 2)[0], StringComparer.Ordinal))
            {
                var option = arg.Split('=', 2);
                var value = option.Length == 2 ? option[1] : Next() ?? throw new UsageException($"option '{arg}' needs a value");
                if (!values.TryAdd(option[0], value))
                    throw new UsageException($"option '{option[0]}' is given twice");
            }
            else if (!onlyPositional && arg.StartsWith('-') && arg.Length > 1)
            {
                var flag = arg == "-n" ? "--what-if" : arg;
                if (!allowedFlags.Contains(flag, StringComparer.Ordinal))
                    throw new UsageException($"unknown option '{arg}'" + (allowedFlags.Length + valueOptions.Length > 0 ? $" (this command takes: {string.Join(", ", allowedFlags.Concat(valueOptions))})" : ""));
                flags.Add(flag);
            }
            else
                positional.Add(arg);
        }
        return new ParsedArgs(positional, flags, help, values);
    }
}
