using System.Globalization;
using System.Text.Json;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Snapshots;

namespace KvmPS.Cli;

/// <summary><c>kvmps vm snapshot create|list|restore|remove</c>, <c>vm save</c>, <c>vm export</c>, <c>vm import</c> (the checkpoint cmdlets' twins).</summary>
internal sealed class VmSnapshotCommands(CliApp app)
{
    public int Snapshot(ArgReader args)
    {
        var sub = args.Next();
        return sub switch
        {
            null => throw new UsageException("vm snapshot: give a subcommand: create, list, restore, remove"),
            "-h" or "--help" => Help("vm snapshot"),
            "create" => app.WithHelp("vm snapshot", () => Create(args.Parse("--allow-raw-disks", "--incremental", "--json"))),
            "list" or "ls" => app.WithHelp("vm snapshot", () => List(args.Parse("--json"))),
            "restore" => app.WithHelp("vm snapshot", () => Restore(args.Parse("--json"))),
            "remove" or "rm" => app.WithHelp("vm snapshot", () => Remove(args.Parse("--include-children", "--json"))),
            _ => throw new UsageException($"vm snapshot: unknown subcommand '{sub}'"),
        };
    }

    private int Help(string topic)
    {
        app.Out.Write(HelpText.For(topic));
        return ExitCodes.Ok;
    }


    private int Create(ParsedArgs options)
    {
        var p = options.Positionals("vm snapshot", "vm snapshot create NAME [SNAPSHOT]", 1, 2);
        var snapshot = app.Manager.Checkpoint(p[0], p.Count > 1 ? p[1] : null, new CheckpointOptions { AllowRawDisks = options.Has("--allow-raw-disks"), Incremental = options.Has("--incremental") });
        if (options.Has("--json"))
            app.Out.WriteLine(CliOutput.Json(w => WriteSnapshot(w, snapshot, app.Manager.GetSnapshots(p[0]))));
        else
            app.Out.WriteLine($"VM '{p[0]}': checkpoint '{snapshot.Name}' taken ({(IncrementalChain.IsIncremental(snapshot) ? "memory changed since its parent" : snapshot.IncludesMemory ? "with memory" : "disks only")}, {CliOutput.Bytes(snapshot.SizeBytes)}).");
        return ExitCodes.Ok;
    }

    private int List(ParsedArgs options)
    {
        var p = options.Positionals("vm snapshot", "vm snapshot list NAME", 1, 1);
        var all = app.Manager.GetSnapshots(p[0]);
        if (options.Has("--json"))
        {
            app.Out.WriteLine(CliOutput.Json(w =>
            {
                w.WriteStartArray();
                foreach (var s in all)
                    WriteSnapshot(w, s, all);
                w.WriteEndArray();
            }));
            return ExitCodes.Ok;
        }
        if (all.Count == 0)
        {
            app.Out.WriteLine($"VM '{p[0]}' has no checkpoints.");
            return ExitCodes.Ok;
        }
        CliOutput.Table(app.Out, new[] { "NAME", "TYPE", "CREATED", "PARENT", "SIZE", "STATE" }, all.Select(s => (IReadOnlyList<string>)new[]
        {
            s.Name,
            s.IncludesMemory ? "Standard" : "DiskOnly",
            s.CreationTimeUtc.ToLocalTime().ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture),
            ParentName(s, all) ?? "-",
            CliOutput.Bytes(s.SizeBytes),
            s.VmState,
        }));
        return ExitCodes.Ok;
    }

    private int Restore(ParsedArgs options)
    {
        var p = options.Positionals("vm snapshot", "vm snapshot restore NAME SNAPSHOT", 2, 2);
        var info = app.Manager.RestoreSnapshot(p[0], p[1]);
        return app.WriteVmResult(options, info, $"VM '{p[0]}' restored to checkpoint '{p[1]}'; it is {info.State}.");
    }

    private int Remove(ParsedArgs options)
    {
        var p = options.Positionals("vm snapshot", "vm snapshot remove NAME SNAPSHOT", 2, 2);
        var removed = app.Manager.RemoveSnapshot(p[0], p[1], options.Has("--include-children"));
        if (options.Has("--json"))
            app.Out.WriteLine(CliOutput.Json(w =>
            {
                w.WriteStartArray();
                foreach (var s in removed)
                    w.WriteStringValue(s.Name);
                w.WriteEndArray();
            }));
        else
            foreach (var s in removed)
                app.Out.WriteLine($"VM '{p[0]}': checkpoint '{s.Name}' removed.");
        return ExitCodes.Ok;
    }

    public int Save(ParsedArgs options)
    {
        var p = options.Positionals("vm save", "vm save NAME", 1, 1);
        var info = app.Manager.Save(p[0]);
        return app.WriteVmResult(options, info, $"VM '{p[0]}' is {info.State}; 'kvmps vm start {p[0]}' resumes it.");
    }

    public int Export(ParsedArgs options)
    {
        var p = options.Positionals("vm export", "vm export NAME DIR", 2, 2);
        var result = app.Manager.Export(p[0], p[1]);
        if (options.Has("--json"))
            app.Out.WriteLine(CliOutput.Json(w =>
            {
                w.WriteStartObject();
                w.WriteString("name", result.Name);
                w.WriteString("path", result.Path);
                w.WriteNumber("sizeBytes", result.SizeBytes);
                w.WriteNumber("snapshots", result.Snapshots);
                w.WriteBoolean("includesSavedState", result.IncludesSavedState);
                w.WriteEndObject();
            }));
        else
            app.Out.WriteLine($"VM '{p[0]}' exported to {result.Path} ({result.Snapshots} checkpoint(s){(result.IncludesSavedState ? ", saved state" : "")}, {CliOutput.Bytes(result.SizeBytes)}).");
        return ExitCodes.Ok;
    }

    public int Import(ParsedArgs options)
    {
        var p = options.Positionals("vm import", "vm import DIR", 1, 1);
        var info = app.Manager.Import(p[0], options.Has("--copy"), options.Has("--new-id"));
        return app.WriteVmResult(options, info, $"VM '{info.Name}' imported{(options.Has("--copy") ? " (copied)" : "")}{(options.Has("--new-id") ? " with new MAC addresses and vsock CID" : "")}; it is {info.State}.");
    }

    private static string? ParentName(VmSnapshot s, IReadOnlyList<VmSnapshot> all) => all.FirstOrDefault(x => x.Id == s.ParentId)?.Name;

    private static void WriteSnapshot(Utf8JsonWriter w, VmSnapshot s, IReadOnlyList<VmSnapshot> all)
    {
        w.WriteStartObject();
        w.WriteString("vmName", s.VmName);
        w.WriteString("name", s.Name);
        w.WriteString("id", s.Id);
        w.WriteString("creationTimeUtc", s.CreationTimeUtc.ToString("O", CultureInfo.InvariantCulture));
        CliOutput.WriteNullable(w, "parentId", s.ParentId);
        CliOutput.WriteNullable(w, "parentName", ParentName(s, all));
        w.WriteNumber("sizeBytes", s.SizeBytes);
        w.WriteBoolean("includesMemory", s.IncludesMemory);
        w.WriteBoolean("incremental", IncrementalChain.IsIncremental(s));
        w.WriteString("vmState", s.VmState);
        w.WriteStartArray("diskSnapshots");
        foreach (var d in s.DiskSnapshots)
            w.WriteStringValue(d.Path);
        w.WriteEndArray();
        w.WriteString("path", s.Directory);
        w.WriteEndObject();
    }
}
