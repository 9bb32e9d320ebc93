using System.Globalization;
using KvmPS.Management.Balloon;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;

namespace KvmPS.Cli;

/// <summary>
/// <c>kvmps vm new|set|firmware|balloon</c>: a new VM from a definition (vm.json's format), stored settings, the boot
/// settings and the balloon; the CLI side of New-/Set-KvmVm, Get-KvmFirmware and Invoke-KvmBalloon (also their -HostName).
/// </summary>
internal sealed partial class VmLiveCommands
{
    /// <summary><c>vm new FILE|-</c>: stores the VM a definition in vm.json's format describes (its disks created); it is not started.</summary>
    public int New(ParsedArgs options)
    {
        var p = options.Positionals("vm new", "vm new FILE|- [--json]", 1, 1);
        var text = p[0] == "-" ? app.In.ReadToEnd() : File.ReadAllText(HostPath(p[0]));
        VmDefinition definition;
        try { definition = VmDefinitionJson.Deserialize(text); }
        catch (VmDefinitionException e) when (e.InnerException is System.Text.Json.JsonException)
        {
            // Not JSON at all (a .psd1 is the usual mistake): name the input, not a VM that has no name yet.
            string source = p[0] == "-" ? "standard input" : p[0];
            throw new UsageException($"vm new: {source} is not a valid VM definition (vm.json's JSON format; " +
                $"a .psd1 manifest goes to 'kvmps apply'): {e.Property}: {e.Reason}");
        }
        var info = app.Manager.New(definition);
        return app.WriteVmResult(options, info, $"VM '{info.Name}' created ({info.State}).");
    }

    /// <summary><c>vm set NAME --vcpus N --memory SIZE --autostart on ...</c>: the settings Set-KvmVm changes.</summary>
    public int Set(ParsedArgs options)
    {
        var p = options.Positionals("vm set", "vm set NAME [--vcpus N] [--max-vcpus N] [--memory SIZE] [--min-memory SIZE] [--max-memory SIZE] "
            + "[--balloon on|off] [--autostart on|off] [--notes TEXT] [--log-max SIZE] [--log-files N] [--kernel PATH] [--initrd PATH] [--cmdline TEXT]", 1, 1);
        var change = new VmSettingsChange
        {
            ProcessorCount = Whole(options, "--vcpus", 1, VcpuSettings.Limit),
            MaximumProcessorCount = Whole(options, "--max-vcpus", 1, VcpuSettings.Limit),
            MemoryStartupBytes = options.Value("--memory") is { } memory ? ParseSize(memory) : null,
            MemoryMinimumBytes = options.Value("--min-memory") is { } min ? ParseSize(min) : null,
            MemoryMaximumBytes = options.Value("--max-memory") is { } max ? ParseSize(max) : null,
            BalloonEnabled = OnOff(options, "--balloon"),
            Autostart = OnOff(options, "--autostart"),
            Notes = options.Value("--notes"),
            // "0" (never rotate) is the one size that needs no unit.
            LogMaxBytes = options.Value("--log-max") is { } logMax ? (logMax == "0" ? 0 : ParseSize(logMax)) : null,
            LogFileCount = Whole(options, "--log-files", 0, 100),
            // An empty --kernel returns to the built-in guest, as Set-KvmVm -KernelPath ''.
            KernelPath = options.Value("--kernel") is { } kernel ? (kernel.Length == 0 ? "" : HostPath(kernel)) : null,
            InitrdPath = options.Value("--initrd") is { } initrd ? (initrd.Length == 0 ? "" : HostPath(initrd)) : null,
            KernelArguments = options.Value("--cmdline"),
        };
        return Report(options, p[0], app.Manager.ChangeSettings(p[0], change));
    }

    private static int? Whole(ParsedArgs options, string option, int minimum, int maximum) =>
        options.Value(option) is not { } text ? null
        : int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n >= minimum && n <= maximum ? n
        : throw new UsageException($"{option} must be a whole number from {minimum} to {maximum} (got '{text}')");

    private static bool? OnOff(ParsedArgs options, string option) => options.Value(option)?.ToLowerInvariant() switch
    {
        null => null,
        "on" or "true" or "yes" or "1" => true,
        "off" or "false" or "no" or "0" => false,
        var text => throw new UsageException($"{option} takes on or off (got '{text}')"),
    };

    /// <summary><c>vm firmware NAME</c>: how the VM boots, its boot order and the one-time boot device (Get-KvmFirmware).</summary>
    public int Firmware(ParsedArgs options)
    {
        var p = options.Positionals("vm firmware", "vm firmware NAME [--json]", 1, 1);
        var definition = app.Manager.Store.Get(p[0]);
        if (options.Has("--json"))
        {
            app.Out.WriteLine(CliOutput.Json(w =>
            {
                w.WriteStartObject();
                w.WriteString("vmName", definition.Name);
                w.WriteString("boot", definition.Boot.ToString());
                w.WriteStartArray("bootOrder");
                foreach (var device in definition.BootOrder)
                    w.WriteStringValue(device.ToString());
                w.WriteEndArray();
                CliOutput.WriteNullable(w, "firstBootDevice", definition.BootOrder.Count > 0 ? definition.BootOrder[0].ToString() : null);
                CliOutput.WriteNullable(w, "bootOnce", definition.BootOnce?.ToString());
                w.WriteEndObject();
            }));
            return ExitCodes.Ok;
        }
        app.Out.WriteLine($"boot:       {definition.Boot}");
        app.Out.WriteLine($"boot order: {(definition.BootOrder.Count == 0 ? "(default: boot disk first)" : string.Join(", ", definition.BootOrder))}");
        app.Out.WriteLine($"boot once:  {definition.BootOnce?.ToString() ?? "-"}");
        return ExitCodes.Ok;
    }

    /// <summary>
    /// <c>vm balloon NAME [SIZE]</c>: with SIZE, the memory the balloon should leave the guest (Invoke-KvmBalloon
    /// -TargetBytes); then, or without it, the VM's memory and balloon as they are.
    /// </summary>
    public int Balloon(ParsedArgs options)
    {
        var p = options.Positionals("vm balloon", "vm balloon NAME [SIZE] [--json]", 1, 2);
        var result = p.Count == 2 ? app.Manager.SetBalloon(p[0], ParseSize(p[1])) : null;
        var status = VmMemoryStatusReader.Read(app.Manager, p[0]);
        if (options.Has("--json"))
        {
            app.Out.WriteLine(CliOutput.Json(w => WriteMemoryStatus(w, status, result)));
            return ExitCodes.Ok;
        }
        if (result is not null)
            Report(options, p[0], result);
        app.Out.WriteLine($"VM '{status.Name}' ({status.State}): target {SizeParser.Format(status.TargetBytes)} "
            + $"(range {SizeParser.Format(status.MinimumBytes)} to {SizeParser.Format(status.MaximumBytes)}), balloon {(status.BalloonEnabled ? "on" : "off")}");
        if (status.CurrentBytes is { } current)
            app.Out.WriteLine($"  booted with {SizeParser.Format(current)}; balloon holds {SizeParser.Format(status.BalloonActualBytes ?? 0)}; "
                + $"guest resident {(status.GuestResidentBytes is { } rss ? SizeParser.Format(rss) : "-")}");
        if (status.RestartNeeded)
            app.Out.WriteLine("  the running VM has no balloon to reach the target: restart it to boot with the target size");
        return ExitCodes.Ok;
    }

    /// <summary>The memory status as JSON, with the change that set it (<c>changes</c>, as setvcpus reports them; empty without SIZE).</summary>
    private static void WriteMemoryStatus(System.Text.Json.Utf8JsonWriter w, VmMemoryStatus status, ChangeResult? result)
    {
        w.WriteStartObject();
        w.WriteString("name", status.Name);
        w.WriteString("state", status.State.ToString());
        w.WriteBoolean("balloonEnabled", status.BalloonEnabled);
        w.WriteNumber("targetBytes", status.TargetBytes);
        w.WriteNumber("minimumBytes", status.MinimumBytes);
        w.WriteNumber("maximumBytes", status.MaximumBytes);
        WriteNumber(w, "currentBytes", status.CurrentBytes);
        WriteNumber(w, "guestResidentBytes", status.GuestResidentBytes);
        WriteNumber(w, "processResidentBytes", status.ProcessResidentBytes);
        WriteNumber(w, "balloonActualBytes", status.BalloonActualBytes);
        WriteNumber(w, "balloonTargetBytes", status.BalloonTargetBytes);
        WriteNumber(w, "guestUsableBytes", status.GuestUsableBytes);
        w.WriteBoolean("restartNeeded", status.RestartNeeded);
        w.WriteStartObject("guestStats");
        foreach (var (name, value) in status.GuestStats)
            w.WriteNumber(name, value);
        w.WriteEndObject();
        WriteChanges(w, result?.Changes ?? []);
        w.WriteEndObject();
    }

    private static void WriteNumber(System.Text.Json.Utf8JsonWriter w, string name, long? value)
    {
        if (value is { } v) w.WriteNumber(name, v); else w.WriteNull(name);
    }
}
