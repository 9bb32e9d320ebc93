using KvmPS.Management.DesiredState;

namespace KvmPS.Cli;

/// <summary>
/// <c>kvmps export [NAME...] [-o FILE] [--force]</c>: the VMs that exist now as a desired-state manifest
/// (<see cref="ManifestExporter"/>, the same as Export-KvmDesiredState), on stdout or into FILE. A name that matches
/// no VM is an error (exit 5) and nothing is written, so a script never keeps a manifest missing a VM it asked for.
/// </summary>
internal sealed class ExportCommand(CliApp app)
{
    public int Run(ArgReader args)
    {
        string? output = null;
        var force = false;
        var json = false;
        var names = new List<string>();
        var onlyNames = false;
        while (args.Next() is { } arg)
        {
            if (onlyNames || !arg.StartsWith('-') || arg.Length == 1)
            {
                names.Add(arg);
                continue;
            }
            switch (arg)
            {
                case "--":
                    onlyNames = true;
                    break;
                case "-h" or "--help":
                    app.Out.Write(HelpText.For("export"));
                    return ExitCodes.Ok;
                case "-o" or "--output":
                    output = args.Next() ?? throw new UsageException($"export: {arg} needs a file name");
                    break;
                case "--force":
                    force = true;
                    break;
                case "--json":
                    json = true;
                    break;
                default:
                    throw new UsageException($"unknown option '{arg}' (export takes: -o FILE, --output FILE, --force, --json)");
            }
        }

        if (json && output is not null)
            throw new UsageException("export: --json prints the manifest in its answer; it takes no -o FILE");
        var export = ManifestExporter.Export(app.Manager, names.Count > 0 ? names : null, pci: app.PciDevices());
        if (json)
            return WriteJson(export);
        if (export.NotFound.Count > 0)
        {
            foreach (var missing in export.NotFound)
                app.Err.WriteLine($"kvmps: export: no VM named '{missing}'");
            return ExitCodes.VmNotFound;
        }
        foreach (var warning in export.Warnings)
            app.Err.WriteLine($"kvmps: warning: {warning}");
        if (output is null || output == "-")
        {
            app.Out.Write(export.Text);
            return ExitCodes.Ok;
        }
        try
        {
            ManifestExporter.WriteFile(output, export.Text, force);
        }
        catch (ManifestFileExistsException e)
        {
            app.Err.WriteLine($"kvmps: export: '{e.Path}' exists; add --force to overwrite it");
            return ExitCodes.OperationFailed;
        }
        app.Err.WriteLine($"kvmps: wrote {export.VmNames.Count} VM(s) to {Path.GetFullPath(output)}");
        return ExitCodes.Ok;
    }

    /// <summary>
    /// --json (Export-KvmDesiredState -HostName reads it): the manifest text, the VMs in it, the names that matched
    /// none and the warnings, in one answer; exit 5 when a name matched none, with the answer still printed, so the
    /// caller reports those and keeps the rest as the local cmdlet does.
    /// </summary>
    private int WriteJson(ManifestExport export)
    {
        app.Out.WriteLine(CliOutput.Json(w =>
        {
            w.WriteStartObject();
            w.WriteString("manifest", export.Text);
            WriteArray(w, "vms", export.VmNames);
            WriteArray(w, "notFound", export.NotFound);
            WriteArray(w, "warnings", export.Warnings);
            w.WriteEndObject();
        }));
        foreach (var missing in export.NotFound)
            app.Err.WriteLine($"kvmps: export: no VM named '{missing}'");
        return export.NotFound.Count > 0 ? ExitCodes.VmNotFound : ExitCodes.Ok;
    }

    private static void WriteArray(System.Text.Json.Utf8JsonWriter w, string name, IEnumerable<string> values)
    {
        w.WriteStartArray(name);
        foreach (var value in values)
            w.WriteStringValue(value);
        w.WriteEndArray();
    }
}
