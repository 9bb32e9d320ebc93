using System.Text.Json;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Pools;

namespace KvmPS.Cli;

/// <summary>
/// <c>kvmps disk create PATH [--size SIZE] [--format raw|qcow2] [--backing IMAGE] [--pool POOL] [--json]</c>: a
/// standalone sparse disk image (the twin of New-KvmDiskImage, which runs it on -HostName; the checks are
/// <see cref="DiskImageFiles"/>'s). Exit codes: 0, 2 usage or a request that cannot be made, 4 the file exists or the
/// pool refused it.
/// </summary>
internal sealed class DiskCommands(CliApp app)
{
    public const string Usage = "disk create PATH [--size SIZE] [--format raw|qcow2] [--backing IMAGE] [--pool POOL] [--json]";

    public int Disk(ArgReader args)
    {
        var sub = args.Next();
        return sub switch
        {
            null => throw new UsageException("disk: give a subcommand: create"),
            "-h" or "--help" => WriteHelp(),
            "create" => app.WithHelp("disk", () => Create(args.Parse(["--json"], ["--size", "--format", "--backing", "--pool"]))),
            _ => throw new UsageException($"disk: unknown subcommand '{sub}'"),
        };
    }

    private int WriteHelp()
    {
        app.Out.Write(HelpText.For("disk"));
        return ExitCodes.Ok;
    }

    private int Create(ParsedArgs options)
    {
        var p = options.Positionals("disk", Usage, 1, 1);
        var size = options.Value("--size") is { } sizeText ? VmLiveCommands.ParseSize(sizeText) : (long?)null;
        DiskFormat? format = options.Value("--format") switch
        {
            null => null,
            var f when f.Equals("raw", StringComparison.OrdinalIgnoreCase) => DiskFormat.Raw,
            var f when f.Equals("qcow2", StringComparison.OrdinalIgnoreCase) => DiskFormat.Qcow2,
            var f => throw new UsageException($"disk create: --format '{f}' is not raw or qcow2"),
        };
        var backing = options.Value("--backing");
        CreatedDiskImage image;
        try
        {
            if (options.Value("--pool") is { } pool)
                image = DiskImageFiles.CreateInPool(new StoragePoolManager(app.Manager.Store), pool, p[0], size, format, backing);
            else
                image = DiskImageFiles.Create(Path.GetFullPath(p[0]), size, format, backing is null ? null : Path.GetFullPath(backing));
        }
        catch (DiskImageRequestException e)
        {
            var option = e.Input switch { "SizeBytes" => "--size", "BackingPath" => "--backing", _ => "PATH" };
            throw new UsageException($"disk create: {option}: {e.Message}");
        }
        if (options.Has("--json"))
        {
            app.Out.WriteLine(CliOutput.Json(w => Write(w, image)));
            return ExitCodes.Ok;
        }
        app.Out.WriteLine($"Disk image created ({image.Format.ToString().ToLowerInvariant()}, {CliOutput.Bytes(image.SizeBytes)}): {image.Path}");
        return ExitCodes.Ok;
    }

    /// <summary>The JSON of a created image (docs/cli.md): what New-KvmDiskImage -HostName reads back.</summary>
    internal static void Write(Utf8JsonWriter w, CreatedDiskImage image)
    {
        w.WriteStartObject();
        w.WriteString("path", image.Path);
        w.WriteString("format", image.Format.ToString().ToLowerInvariant());
        w.WriteNumber("sizeBytes", image.SizeBytes);
        w.WriteNumber("fileSizeBytes", image.FileSizeBytes);
        CliOutput.WriteNullable(w, "backingPath", image.BackingPath);
        w.WriteEndObject();
    }
}
