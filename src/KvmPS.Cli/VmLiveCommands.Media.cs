using System.Globalization;
using KvmPS.Management.Definitions;
using KvmPS.Management.Pools;

namespace KvmPS.Cli;

/// <summary><c>kvmps vm attach-iso|eject-iso|boot-order|vnc|screenshot</c>: DVD media, boot order and the graphical console.</summary>
internal sealed partial class VmLiveCommands
{
    /// <summary>Inserts the ISO into drive N (default 0); a VM without a DVD drive gets one (at its next start if it runs).</summary>
    public int AttachIso(ParsedArgs options)
    {
        var p = options.Positionals("vm attach-iso", "vm attach-iso NAME ISO|VOLUME [--pool POOL] [--drive N] [--live|--config]", 2, 2);
        var scope = Scope(options, "vm attach-iso");
        var pool = options.Value("--pool");
        var iso = pool is null ? HostPath(p[1]) : new StoragePoolManager(app.Manager.Store).VolumeReference(pool, p[1]);
        var drives = app.Manager.Store.Get(p[0]).DvdDrives;
        var drive = Drive(options, "vm attach-iso");
        if (drives.Count == 0 && drive == 0)
            return Report(options, p[0], app.Manager.AddDvdDrive(p[0], iso));
        return Report(options, p[0], app.Manager.SetDvdMedia(p[0], drive, iso, scope));
    }

    public int EjectIso(ParsedArgs options)
    {
        var p = options.Positionals("vm eject-iso", "vm eject-iso NAME [--drive N] [--live|--config]", 1, 1);
        return Report(options, p[0], app.Manager.SetDvdMedia(p[0], Drive(options, "vm eject-iso"), null, Scope(options, "vm eject-iso")));
    }

    /// <summary><c>vm boot-order NAME dvd,disk,network [--first DEVICE] [--once DEVICE]</c>; <c>default</c> goes back to the boot disk first.</summary>
    public int BootOrder(ParsedArgs options)
    {
        var p = options.Positionals("vm boot-order", "vm boot-order NAME DEVICE[,DEVICE...]|default|keep [--first DEVICE] [--once DEVICE|--clear-once]", 2, 2);
        IReadOnlyList<BootDevice>? order = p[1].ToLowerInvariant() switch
        {
            "default" => [],
            "keep" => null,
            _ => p[1].Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(d => Device(d, "vm boot-order")).ToList(),
        };
        // --first moves one device to the front of the given order (keep: the stored one), as Set-KvmFirmware -FirstBootDevice.
        if (options.Value("--first") is { } firstText)
            order = BootOrders.WithFirst(order ?? app.Manager.Store.Get(p[0]).BootOrder, Device(firstText, "vm boot-order --first"));
        var once = options.Value("--once") is { } text ? Device(text, "vm boot-order --once") : (BootDevice?)null;
        if (once is not null && options.Has("--clear-once"))
            throw new UsageException("vm boot-order: --once and --clear-once contradict each other");
        return Report(options, p[0], app.Manager.SetFirmware(p[0], order, once, options.Has("--clear-once")));
    }

    /// <summary>Prints where the VM's VNC server listens and how to connect a viewer.</summary>
    public int Vnc(ParsedArgs options)
    {
        var p = options.Positionals("vm vnc", "vm vnc NAME [--json]", 1, 1);
        var endpoints = app.Manager.GetVncEndpoints(p[0])
            ?? throw new Management.Lifecycle.ManagementValidationException(p[0], "Display", "the VM has no display (Display = @{ Vnc = 'unix' } in its manifest; it takes effect at the next start)");
        if (options.Has("--json"))
        {
            app.Out.WriteLine(CliOutput.Json(w =>
            {
                w.WriteStartObject();
                w.WriteString("name", p[0]);
                w.WriteString("unix", endpoints.UnixPath);
                CliOutput.WriteNullable(w, "tcp", endpoints.Tcp);
                w.WriteBoolean("password_required", endpoints.PasswordRequired);
                w.WriteBoolean("running", endpoints.Running);
                w.WriteEndObject();
            }));
            return ExitCodes.Ok;
        }
        app.Out.WriteLine("unix:" + endpoints.UnixPath);
        if (endpoints.Tcp is { } tcp)
            app.Out.WriteLine("tcp:" + tcp + (endpoints.PasswordRequired ? " (VNC password)" : ""));
        if (!endpoints.Running)
            app.Err.WriteLine($"kvmps: VM '{p[0]}' is not running; its VNC server listens there once it is started.");
        app.Err.WriteLine("Connect with: " + string.Join("  or  ", endpoints.ViewerCommands));
        return ExitCodes.Ok;
    }

    public int Screenshot(ParsedArgs options)
    {
        var p = options.Positionals("vm screenshot", "vm screenshot NAME FILE.png [--timeout SECONDS]", 2, 2);
        var timeout = Timeout(options, "vm screenshot");
        // FILE '-': no file here; the PNG goes into the JSON answer (pngBase64), which Get-KvmVmScreenshot -HostName saves on its side.
        var toAnswer = p[1] == "-";
        if (toAnswer && !options.Has("--json"))
            throw new UsageException("vm screenshot: FILE '-' puts the PNG into the JSON answer: add --json");
        var shot = app.Manager.Screenshot(p[0], toAnswer ? null : HostPath(p[1]), timeout);
        if (options.Has("--json"))
        {
            app.Out.WriteLine(CliOutput.Json(w =>
            {
                w.WriteStartObject();
                w.WriteString("name", p[0]);
                CliOutput.WriteNullable(w, "path", shot.Path);
                w.WriteNumber("width", shot.Width);
                w.WriteNumber("height", shot.Height);
                if (toAnswer)
                    w.WriteBase64String("pngBase64", KvmPS.Management.Display.ScreenshotWriter.ToPng(shot.Frame!));
                w.WriteEndObject();
            }));
            return ExitCodes.Ok;
        }
        app.Out.WriteLine($"VM '{p[0]}': {shot.Width}x{shot.Height} screenshot written to {shot.Path}");
        return ExitCodes.Ok;
    }

    private static int Drive(ParsedArgs options, string topic) =>
        options.Value("--drive") is not { } text ? 0
        : int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n < DvdDriveDefinition.MaximumCount ? n
        : throw new UsageException($"{topic}: --drive must be a drive number from 0 to {DvdDriveDefinition.MaximumCount - 1} (got '{text}')");

    private static BootDevice Device(string text, string topic) =>
        Enum.TryParse<BootDevice>(text, ignoreCase: true, out var device) && Enum.IsDefined(device) && !char.IsDigit(text[0]) ? device
        : throw new UsageException($"{topic}: '{text}' is not a boot device (dvd, disk or network)");
}
