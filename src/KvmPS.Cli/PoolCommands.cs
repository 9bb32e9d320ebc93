using System.Text.Json;
using KvmPS.Management.Definitions;
using KvmPS.Management.Pools;

namespace KvmPS.Cli;

/// <summary>
/// <c>kvmps pool list|create|remove|info</c> and <c>kvmps vol list|create|remove</c>: storage pools and volumes
/// (the twins of New/Get/Remove-KvmStoragePool and Get/New/Remove-KvmVolume; docs/pools.md). Exit codes: 0, 2 usage,
/// 4 refused or failed (bad name or folder, pool or volume missing or in use), 6 store unusable.
/// </summary>
internal sealed class PoolCommands(CliApp app)
{
    private StoragePoolManager Pools => new(app.Manager.Store);

    public int Pool(ArgReader args)
    {
        var sub = args.Next();
        return sub switch
        {
            null => throw new UsageException("pool: give a subcommand: list, create, remove, info"),
            "-h" or "--help" => WriteHelp("pool"),
            "list" or "ls" => app.WithHelp("pool", () => PoolList(args.Parse("--json"))),
            "create" => app.WithHelp("pool", () => PoolCreate(args.Parse("--autostart", "--create-path", "--json"))),
            "remove" or "rm" => app.WithHelp("pool", () => PoolRemove(args.Parse("--json"))),
            "info" => app.WithHelp("pool", () => PoolInfo(args.Parse("--json"))),
            _ => throw new UsageException($"pool: unknown subcommand '{sub}'"),
        };
    }

    public int Vol(ArgReader args)
    {
        var sub = args.Next();
        return sub switch
        {
            null => throw new UsageException("vol: give a subcommand: list, create, remove"),
            "-h" or "--help" => WriteHelp("vol"),
            "list" or "ls" => app.WithHelp("vol", () => VolList(args.Parse("--json"))),
            "create" => app.WithHelp("vol", () => VolCreate(args.Parse(["--json"], ["--size", "--format", "--backing"]))),
            "remove" or "rm" => app.WithHelp("vol", () => VolRemove(args.Parse("--json"))),
            _ => throw new UsageException($"vol: unknown subcommand '{sub}'"),
        };
    }

    private int WriteHelp(string topic)
    {
        app.Out.Write(Help(topic));
        return ExitCodes.Ok;
    }


    // ---- pool ----------------------------------------------------------------------------------------

    private int PoolList(ParsedArgs options)
    {
        options.Positionals("pool", "pool list [--json]", 0, 0);
        var pools = Pools.List();
        if (options.Has("--json"))
        {
            app.Out.WriteLine(CliOutput.Json(w =>
            {
                w.WriteStartArray();
                foreach (var pool in pools)
                    WritePool(w, pool);
                w.WriteEndArray();
            }));
            return ExitCodes.Ok;
        }
        CliOutput.Table(app.Out, ["NAME", "STATE", "AUTOSTART", "CAPACITY", "ALLOCATION", "AVAILABLE", "VOLUMES", "PATH"], pools.Select(p => (IReadOnlyList<string>)
        [
            p.Name, p.State.ToString(), p.Autostart ? "yes" : "no", CliOutput.Bytes(p.CapacityBytes), CliOutput.Bytes(p.AllocationBytes),
            CliOutput.Bytes(p.AvailableBytes), p.VolumeCount.ToString(System.Globalization.CultureInfo.InvariantCulture), p.Path,
        ]));
        return ExitCodes.Ok;
    }

    private int PoolCreate(ParsedArgs options)
    {
        var p = options.Positionals("pool", "pool create NAME PATH [--autostart] [--create-path] [--json]", 2, 2);
        var pool = Pools.Create(p[0], Path.GetFullPath(p[1]), options.Has("--autostart"), options.Has("--create-path"));
        return Report(options, pool, $"Storage pool '{pool.Name}' created on '{pool.Path}'.");
    }

    private int PoolRemove(ParsedArgs options)
    {
        var p = options.Positionals("pool", "pool remove NAME [--json]", 1, 1);
        var pool = Pools.Get(p[0]);
        Pools.Remove(p[0]);
        return Report(options, pool, $"Storage pool '{pool.Name}' removed (its folder '{pool.Path}' and volumes stay).");
    }

    private int PoolInfo(ParsedArgs options)
    {
        var p = options.Positionals("pool", "pool info NAME [--json]", 1, 1);
        var pool = Pools.Get(p[0]);
        if (options.Has("--json"))
        {
            app.Out.WriteLine(CliOutput.Json(w => WritePool(w, pool)));
            return ExitCodes.Ok;
        }
        app.Out.WriteLine($"Name:       {pool.Name}{(pool.IsDefault ? " (built in)" : "")}");
        app.Out.WriteLine($"Path:       {pool.Path}");
        app.Out.WriteLine($"State:      {pool.State}");
        app.Out.WriteLine($"Autostart:  {(pool.Autostart ? "yes" : "no")}");
        app.Out.WriteLine($"Capacity:   {CliOutput.Bytes(pool.CapacityBytes)}");
        app.Out.WriteLine($"Allocation: {CliOutput.Bytes(pool.AllocationBytes)}");
        app.Out.WriteLine($"Available:  {CliOutput.Bytes(pool.AvailableBytes)}");
        app.Out.WriteLine($"Volumes:    {pool.VolumeCount}");
        return ExitCodes.Ok;
    }

    private int Report(ParsedArgs options, StoragePoolInfo pool, string text)
    {
        if (options.Has("--json"))
            app.Out.WriteLine(CliOutput.Json(w => WritePool(w, pool)));
        else
            app.Out.WriteLine(text);
        return ExitCodes.Ok;
    }

    internal static void WritePool(Utf8JsonWriter w, StoragePoolInfo pool)
    {
        w.WriteStartObject();
        w.WriteString("name", pool.Name);
        w.WriteString("path", pool.Path);
        w.WriteString("state", pool.State.ToString());
        w.WriteBoolean("autostart", pool.Autostart);
        w.WriteBoolean("isDefault", pool.IsDefault);
        w.WriteNumber("capacityBytes", pool.CapacityBytes);
        w.WriteNumber("allocationBytes", pool.AllocationBytes);
        w.WriteNumber("availableBytes", pool.AvailableBytes);
        w.WriteNumber("volumeCount", pool.VolumeCount);
        w.WriteEndObject();
    }

    // ---- vol -----------------------------------------------------------------------------------------

    private int VolList(ParsedArgs options)
    {
        var p = options.Positionals("vol", "vol list [POOL] [--json]", 0, 1);
        var pool = p.Count > 0 ? p[0] : StoragePoolNames.DefaultPool;
        var volumes = Pools.ListVolumes(pool);
        if (options.Has("--json"))
        {
            app.Out.WriteLine(CliOutput.Json(w =>
            {
                w.WriteStartArray();
                foreach (var volume in volumes)
                    WriteVolume(w, volume);
                w.WriteEndArray();
            }));
            return ExitCodes.Ok;
        }
        if (volumes.Count == 0)
        {
            app.Out.WriteLine($"Pool '{pool}' has no volumes.");
            return ExitCodes.Ok;
        }
        CliOutput.Table(app.Out, ["NAME", "FORMAT", "CAPACITY", "ALLOCATION", "BACKING", "USED BY"], volumes.Select(v => (IReadOnlyList<string>)
        [
            v.Name, v.Format.ToString().ToLowerInvariant(), CliOutput.Bytes(v.CapacityBytes), CliOutput.Bytes(v.AllocationBytes),
            v.BackingVolume ?? "-", v.UsedBy.Count == 0 ? "-" : string.Join(",", v.UsedBy),
        ]));
        return ExitCodes.Ok;
    }

    private int VolCreate(ParsedArgs options)
    {
        var p = options.Positionals("vol", "vol create POOL NAME [--size SIZE] [--format raw|qcow2] [--backing VOLUME] [--json]", 2, 2);
        var size = options.Value("--size") is { } sizeText ? VmLiveCommands.ParseSize(sizeText) : (long?)null;
        DiskFormat? format = options.Value("--format") switch
        {
            null => null,
            var f when f.Equals("raw", StringComparison.OrdinalIgnoreCase) => DiskFormat.Raw,
            var f when f.Equals("qcow2", StringComparison.OrdinalIgnoreCase) => DiskFormat.Qcow2,
            var f => throw new UsageException($"vol create: --format '{f}' is not raw or qcow2"),
        };
        var volume = Pools.CreateVolume(p[0], p[1], size, format, options.Value("--backing"));
        if (options.Has("--json"))
            app.Out.WriteLine(CliOutput.Json(w => WriteVolume(w, volume)));
        else
            app.Out.WriteLine($"Volume '{volume.Name}' created in pool '{volume.Pool}' ({volume.Format.ToString().ToLowerInvariant()}, {CliOutput.Bytes(volume.CapacityBytes)}): {volume.Path}");
        return ExitCodes.Ok;
    }

    private int VolRemove(ParsedArgs options)
    {
        var p = options.Positionals("vol", "vol remove POOL NAME [--json]", 2, 2);
        var volume = Pools.GetVolume(p[0], p[1]);
        Pools.RemoveVolume(p[0], p[1]);
        if (options.Has("--json"))
            app.Out.WriteLine(CliOutput.Json(w => WriteVolume(w, volume)));
        else
            app.Out.WriteLine($"Volume '{volume.Name}' removed from pool '{volume.Pool}'.");
        return ExitCodes.Ok;
    }

    internal static void WriteVolume(Utf8JsonWriter w, StorageVolumeInfo volume)
    {
        w.WriteStartObject();
        w.WriteString("pool", volume.Pool);
        w.WriteString("name", volume.Name);
        w.WriteString("path", volume.Path);
        w.WriteString("format", volume.Format.ToString().ToLowerInvariant());
        w.WriteNumber("capacityBytes", volume.CapacityBytes);
        w.WriteNumber("allocationBytes", volume.AllocationBytes);
        CliOutput.WriteNullable(w, "backingVolume", volume.BackingVolume);
        w.WriteStartArray("usedBy");
        foreach (var vm in volume.UsedBy)
            w.WriteStringValue(vm);
        w.WriteEndArray();
        w.WriteEndObject();
    }

    // ---- help ----------------------------------------------------------------------------------------

    public static string? Help(string topic) => topic switch
    {
        "pool" or "pool list" or "pool create" or "pool remove" or "pool info" => """
            Usage: kvmps pool list|create|remove|info ...

              list [--json]
                  Every storage pool (the built-in 'default' under the store first): state, autostart, the capacity,
                  allocation and available space of its file system, volume count, folder.
              create NAME PATH [--autostart] [--create-path] [--json]
                  Defines a directory pool on PATH (absolute, or relative to the current folder). The folder must
                  exist (--create-path: made 0700), be a folder you can read and write, not be writable by others,
                  and have free space. --autostart: 'kvmps autostart' checks (and re-creates) it before VMs start.
              remove NAME [--json]
                  Forgets the pool; its folder and volumes stay. Refused while a VM uses one of its volumes (named),
                  and for 'default'.
              info NAME [--json]
                  One pool in detail.
            Pool folders count as allowed paths for VM disks. Disks name volumes with Pool = 'p'; Volume = 'v' (docs/pools.md).
            Exit: 0, 2 usage, 4 refused (bad name or folder, no such pool, pool in use), 6 store unusable.

            """,
        "vol" or "vol list" or "vol create" or "vol remove" => """
            Usage: kvmps vol list|create|remove ...

              list [POOL] [--json]
                  The volumes of POOL (default: 'default'): format, capacity, allocation, backing volume, the VMs using it.
              create POOL NAME [--size SIZE] [--format raw|qcow2] [--backing VOLUME] [--json]
                  Creates a sparse raw or qcow2 image (SIZE e.g. 512M, 10G). qcow2 by default for *.qcow2 names and
                  with --backing (a volume of the same pool; its size is taken when --size is left out).
              remove POOL NAME [--json]
                  Deletes the volume; refused while a VM definition or another volume (as its backing file) uses it.
            Volume names: no '/', not '.' or '..', not starting with '.'.
            Exit: 0, 2 usage, 4 refused (bad name or size, no such pool or volume, exists, in use), 6 store unusable.

            """,
        _ => null,
    };
}
