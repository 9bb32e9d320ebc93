using KvmPS.Management.Lifecycle;
using KvmPS.Management.SerialConsole;

namespace KvmPS.Cli;

/// <summary><c>kvmps vm ...</c>: the subcommand table and the lifecycle verbs (list, start, stop, restart, suspend, resume, remove, console); the others live in their own command classes.</summary>
public sealed partial class CliApp
{
    // ---- vm ---------------------------------------------------------------------------------------------

    private int Vm(ArgReader args)
    {
        var sub = args.Next();
        return sub switch
        {
            null => throw new UsageException("vm: give a subcommand: list, start, stop, restart, suspend, resume, remove, console, log, setvcpus, setmem, setlimits, attach-disk, detach-disk, attach-nic, detach-nic, attach-iso, eject-iso, attach-pci, detach-pci, boot-order, firmware, new, set, balloon, dvd, vnc, screenshot, addresses, snapshot, save, export, import, upgrade, migrate"),
            "-h" or "--help" => WriteHelp("vm"),
            "list" or "ls" => WithHelp("vm list", () => VmList(args.Parse("--json"))),
            "start" => WithHelp("vm start", () => VmStart(args.Parse("--json"))),
            "stop" => WithHelp("vm stop", () => VmStop(args.Parse("--force", "--json"))),
            "restart" or "reboot" => WithHelp("vm restart", () => VmRestart(args.Parse("--force", "--json"))),
            "suspend" => WithHelp("vm suspend", () => VmSuspendOrResume(args.Parse("--json"), suspend: true)),
            "resume" => WithHelp("vm resume", () => VmSuspendOrResume(args.Parse("--json"), suspend: false)),
            "remove" or "rm" => WithHelp("vm remove", () => VmRemove(args.Parse("--force", "--keep-disks", "--json"))),
            "console" => WithHelp("vm console", () => VmConsole(args.Parse("--no-replay"))),
            "log" => WithHelp("vm log", () => new VmLogCommand(this).Run(args.Parse(["--json"], ["--tail"]))),
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
            "boot-order" => WithHelp("vm boot-order", () => new VmLiveCommands(this).BootOrder(args.Parse(["--clear-once", "--json"], ["--once", "--first"]))),
            "new" => WithHelp("vm new", () => new VmLiveCommands(this).New(args.Parse("--json"))),
            "set" => WithHelp("vm set", () => new VmLiveCommands(this).Set(args.Parse(["--json"], ["--vcpus", "--max-vcpus", "--memory", "--min-memory", "--max-memory",
                "--balloon", "--autostart", "--notes", "--log-max", "--log-files", "--kernel", "--initrd", "--cmdline"]))),
            "firmware" => WithHelp("vm firmware", () => new VmLiveCommands(this).Firmware(args.Parse("--json"))),
            "balloon" => WithHelp("vm balloon", () => new VmLiveCommands(this).Balloon(args.Parse("--json"))),
            "dvd" => new VmLiveCommands(this).Dvd(args),
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
}
