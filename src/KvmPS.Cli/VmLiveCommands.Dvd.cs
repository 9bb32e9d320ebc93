using KvmPS.Management.Pools;

namespace KvmPS.Cli;

/// <summary>
/// <c>kvmps vm dvd list|add|remove</c>: a VM's CD/DVD drives (Get-, Add-, Remove-KvmDvdDrive, also with -HostName);
/// media go in and out with <c>vm attach-iso|eject-iso</c>.
/// </summary>
internal sealed partial class VmLiveCommands
{
    public int Dvd(ArgReader args)
    {
        var sub = args.Next();
        return sub switch
        {
            null => throw new UsageException("vm dvd: give a subcommand: list, add, remove"),
            "-h" or "--help" => app.WithHelp("vm dvd", () => throw new CliApp.HelpRequested("vm dvd")),
            "list" or "ls" => app.WithHelp("vm dvd", () => DvdList(args.Parse("--json"))),
            "add" => app.WithHelp("vm dvd", () => DvdAdd(args.Parse(["--json"], ["--pool"]))),
            "remove" or "rm" => app.WithHelp("vm dvd", () => DvdRemove(args.Parse(["--json"], ["--drive"]))),
            _ => throw new UsageException($"vm dvd: unknown subcommand '{sub}' (list, add, remove)"),
        };
    }

    private int DvdList(ParsedArgs options)
    {
        var p = options.Positionals("vm dvd", "vm dvd list NAME [--json]", 1, 1);
        var drives = app.Manager.Store.Get(p[0]).DvdDrives;
        string? FullPath(string? path) => path is null ? null : app.Manager.Store.ResolveDiskPath(p[0], path);
        if (options.Has("--json"))
        {
            app.Out.WriteLine(CliOutput.Json(w =>
            {
                w.WriteStartArray();
                for (var i = 0; i < drives.Count; i++)
                {
                    w.WriteStartObject();
                    w.WriteString("vmName", p[0]);
                    w.WriteNumber("controllerLocation", i);
                    CliOutput.WriteNullable(w, "path", drives[i].Path);
                    CliOutput.WriteNullable(w, "pool", drives[i].Pool);
                    CliOutput.WriteNullable(w, "volume", drives[i].Volume);
                    CliOutput.WriteNullable(w, "fullPath", FullPath(drives[i].Path));
                    w.WriteEndObject();
                }
                w.WriteEndArray();
            }));
            return ExitCodes.Ok;
        }
        if (drives.Count == 0)
            app.Out.WriteLine($"VM '{p[0]}' has no DVD drive.");
        else
            CliOutput.Table(app.Out, ["DRIVE", "MEDIUM", "FILE"], drives.Select((d, i) => (IReadOnlyList<string>)
                [i.ToString(System.Globalization.CultureInfo.InvariantCulture), d.Path ?? "(empty)", FullPath(d.Path) ?? "-"]));
        return ExitCodes.Ok;
    }

    /// <summary><c>vm dvd add NAME [ISO|VOLUME --pool POOL]</c>: a new drive, empty without ISO (a running VM gets it at its next start).</summary>
    private int DvdAdd(ParsedArgs options)
    {
        var p = options.Positionals("vm dvd", "vm dvd add NAME [ISO | VOLUME --pool POOL] [--json]", 1, 2);
        var pool = options.Value("--pool");
        if (pool is not null && p.Count == 1)
            throw new UsageException("vm dvd add: --pool needs the volume's name (kvmps vm dvd add NAME VOLUME --pool POOL)");
        var iso = p.Count == 1 ? null : pool is null ? HostPath(p[1]) : new StoragePoolManager(app.Manager.Store).VolumeReference(pool, p[1]);
        return Report(options, p[0], app.Manager.AddDvdDrive(p[0], iso));
    }

    /// <summary><c>vm dvd remove NAME [--drive N]</c>: --drive may be left out when the VM has one drive.</summary>
    private int DvdRemove(ParsedArgs options)
    {
        var p = options.Positionals("vm dvd", "vm dvd remove NAME [--drive N] [--json]", 1, 1);
        var drive = options.Value("--drive") is null ? (int?)null : Drive(options, "vm dvd remove");
        return Report(options, p[0], app.Manager.RemoveDvdDrive(p[0], drive));
    }
}
