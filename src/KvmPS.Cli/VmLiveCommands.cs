using System.Globalization;
using System.Text.RegularExpressions;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;

namespace KvmPS.Cli;

/// <summary>
/// <c>kvmps vm setvcpus</c> and <c>vm setmem</c>, in the virsh manner: <c>--live</c> changes the running VM (and
/// stores it), <c>--config</c> only the stored definition, neither: the running VM where it can take the change, else
/// the definition for the next start (virsh's <c>--current</c>). KvmPS always stores the change: the definition is the truth.
/// </summary>
internal sealed partial class VmLiveCommands(CliApp app)
{
    public int SetVcpus(ParsedArgs options)
    {
        // COUNT may be left out when --maximum is given (Set-KvmVcpu -Maximum -HostName): the count stays.
        var p = options.Positionals("vm setvcpus", "vm setvcpus NAME [COUNT] [--maximum N] [--live|--config]", 1, 2);
        var maximum = options.Value("--maximum") is { } m ? VcpuNumber("--maximum", m) : (int?)null;
        if (p.Count == 1 && maximum is null)
            throw new UsageException("vm setvcpus: give COUNT, --maximum or both (kvmps vm setvcpus NAME COUNT)");
        var count = p.Count == 2 ? VcpuNumber("COUNT", p[1]) : app.Manager.GetDefinition(p[0]).Vcpus.Count;
        var result = app.Manager.SetVcpu(p[0], count, maximum, Scope(options, "vm setvcpus"));
        return Report(options, p[0], result);
    }

    private static int VcpuNumber(string what, string text) =>
        int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n >= 1 && n <= VcpuSettings.Limit
            ? n
            : throw new UsageException($"vm setvcpus: {what} must be a whole number from 1 to {VcpuSettings.Limit} (got '{text}')");

    public int SetMem(ParsedArgs options)
    {
        // SIZE may be left out when --minimum or --maximum is given (Set-KvmMemory -MaximumBytes -HostName).
        var p = options.Positionals("vm setmem", "vm setmem NAME [SIZE] [--minimum SIZE] [--maximum SIZE] [--live|--config]", 1, 2);
        var change = new VmSettingsChange
        {
            MemoryStartupBytes = p.Count == 2 ? ParseSize(p[1]) : null,
            MemoryMinimumBytes = options.Value("--minimum") is { } min ? ParseSize(min) : null,
            MemoryMaximumBytes = options.Value("--maximum") is { } max ? ParseSize(max) : null,
        };
        if (change.MemoryStartupBytes is null && change.MemoryMinimumBytes is null && change.MemoryMaximumBytes is null)
            throw new UsageException("vm setmem: give SIZE, --minimum, --maximum or several of them (kvmps vm setmem NAME SIZE)");
        var result = app.Manager.ChangeSettings(p[0], change, Scope(options, "vm setmem"));
        return Report(options, p[0], result);
    }

    private static ChangeScope Scope(ParsedArgs options, string topic) => (options.Has("--live"), options.Has("--config")) switch
    {
        (true, true) => throw new UsageException($"{topic}: give --live or --config, not both"),
        (true, false) => ChangeScope.Live,
        (false, true) => ChangeScope.Config,
        _ => ChangeScope.Current,
    };

    [GeneratedRegex(@"^\s*([0-9]+(\.[0-9]+)?)\s*([KMGTP])\s*$", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex LetterUnit();

    /// <summary>
    /// A size with a unit: <c>512M</c>, <c>1G</c>, <c>1.5GiB</c>, <c>512MB</c> (all 1024-based). A bare number is refused:
    /// virsh reads it as KiB and KvmPS manifests as bytes, so either reading would surprise someone.
    /// </summary>
    internal static long ParseSize(string text)
    {
        var letter = LetterUnit().Match(text);
        var withUnit = letter.Success ? letter.Groups[1].Value + letter.Groups[3].Value + "B" : text;
        // A bare number is refused; "4096B" (bytes said explicitly, as the cmdlets send them) passes to SizeParser.
        if (!letter.Success && Regex.IsMatch(text.Trim(), @"^[0-9]+$", RegexOptions.CultureInvariant))
            throw new UsageException($"size '{text}' needs a unit (e.g. 512M, 1G)");
        try
        {
            return SizeParser.ParseBytes(withUnit);
        }
        catch (ValueFormatException e)
        {
            throw new UsageException($"size '{text}': {e.Message}");
        }
    }

    /// <summary>The <c>changes</c> array of a --json answer (RemoteHost.ReportChange reads it on the cmdlets' side).</summary>
    private static void WriteChanges(System.Text.Json.Utf8JsonWriter w, IEnumerable<PropertyChange> changes)
    {
        w.WriteStartArray("changes");
        foreach (var c in changes)
        {
            w.WriteStartObject();
            w.WriteString("property", c.Property);
            CliOutput.WriteNullable(w, "old", c.OldValue);
            CliOutput.WriteNullable(w, "new", c.NewValue);
            w.WriteString("application", c.Application.ToString());
            w.WriteEndObject();
        }
        w.WriteEndArray();
    }

    private int Report(ParsedArgs options, string name, ChangeResult result)
    {
        if (options.Has("--json"))
        {
            app.Out.WriteLine(CliOutput.Json(w =>
            {
                w.WriteStartObject();
                w.WriteString("name", name);
                w.WriteString("state", result.State.ToString());
                WriteChanges(w, result.Changes);
                w.WriteEndObject();
            }));
            return ExitCodes.Ok;
        }
        if (result.Changes.Count == 0)
            app.Out.WriteLine($"VM '{name}': nothing to change.");
        foreach (var c in result.Changes)
            app.Out.WriteLine($"VM '{name}': {c.Property} {DisplayText.Value(c.Property, c.OldValue)} -> {DisplayText.Value(c.Property, c.NewValue)} " + c.Application switch
            {
                ChangeApplication.AppliedLive => "(applied to the running VM and stored)",
                ChangeApplication.RestartNeeded => "(stored; the running VM gets it when it is restarted)",
                _ => "(stored)",
            });
        return ExitCodes.Ok;
    }
}
