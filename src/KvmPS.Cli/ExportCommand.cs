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
                default:
                    throw new UsageException($"unknown option '{arg}' (export takes: -o FILE, --output FILE, --force)");
            }
        }

        var export = ManifestExporter.Export(app.Manager, names.Count > 0 ? names : null, pci: app.PciDevices());
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
}
