using System.Collections.Specialized;
using System.Text.Json;
using KvmPS.Management.Definitions;
using KvmPS.Management.DesiredState;
using KvmPS.Management.Lifecycle;

namespace KvmPS.Cli;

/// <summary>The DSC instance JSON on stdin is not usable (not JSON, not an object, unknown property).</summary>
internal sealed class DscInputException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// <c>kvmps dsc get|test|set</c>: the Microsoft DSC v3 command-resource protocol for the
/// <c>KvmPS/VirtualMachine</c> resource (kvmps.dsc.resource.json). One instance as JSON on stdin; the state as
/// one line of JSON on stdout; for test and set (<c>return: stateAndDiff</c>) a second line with the JSON array of
/// the property names that differ / were changed. Properties follow HyperVDsc's VMHyperV and map onto the
/// manifest schema (<see cref="Properties"/>); only the properties an instance states are enforced.
/// Exit status 0 for success (also when test finds drift: dsc reads <c>_inDesiredState</c>), 3 for bad input,
/// 4 when set fails, 6 when the environment is unusable.
/// </summary>
internal sealed class DscCommand(CliApp app)
{
    public const string ResourceType = "KvmPS/VirtualMachine";
    public const string StdinSource = "<stdin>";
    private const long DefaultStartupMemory = 256L * 1024 * 1024;

    /// <summary>DSC property → manifest key (Boot.* for the boot properties).</summary>
    public static readonly IReadOnlyList<(string Dsc, string Manifest)> Properties = new[]
    {
        ("Name", "Name"),
        ("Ensure", "Ensure"),
        ("State", "State"),
        ("RestartIfNeeded", "RestartIfNeeded"),
        ("StartupMemory", "MemoryStartupBytes"),
        ("MinimumMemory", "MemoryMinimumBytes"),
        ("MaximumMemory", "MemoryMaximumBytes"),
        ("ProcessorCount", "VcpuCount"),
        ("MaximumProcessorCount", "VcpuMaximum"),
        ("Notes", "Notes"),
        ("Autostart", "Autostart"),
        ("CpuRelativeWeight", "CpuRelativeWeight"),
        ("CpuMaximumPercent", "CpuMaximumPercent"),
        ("VmmOverheadLimitBytes", "VmmOverheadLimitBytes"),
        ("KernelPath", "Boot.KernelPath"),
        ("InitrdPath", "Boot.InitrdPath"),
        ("KernelArguments", "Boot.Cmdline"),
    };

    /// <summary>Read-only properties get returns; accepted and ignored on input.</summary>
    public static readonly IReadOnlyList<string> ReadOnlyProperties = new[] { "ProcessId", "Uptime" };

    public int Run(ArgReader args)
    {
        var operation = args.Next();
        var rest = args.Parse();
        if (rest.Help || operation is "-h" or "--help")
        {
            app.Out.Write(HelpText.For("dsc"));
            return ExitCodes.Ok;
        }
        if (rest.Positional.Count > 0)
            throw new UsageException($"dsc {operation}: takes no arguments (the instance is read from stdin)");
        return operation switch
        {
            "get" => Get(),
            "test" => Test(),
            "set" => Set(),
            null => throw new UsageException("dsc: give an operation: get, test or set"),
            _ => throw new UsageException($"dsc: unknown operation '{operation}' (get, test, set)"),
        };
    }

    private int Get()
    {
        var input = ReadInstance();
        var name = RequiredName(input);
        app.Out.WriteLine(CliOutput.Json(w => WriteState(w, name, app.Manager.TryGet(name), null), indented: false));
        return ExitCodes.Ok;
    }

    private int Test()
    {
        var (vm, stated) = ReadDesired();
        var info = app.Manager.TryGet(vm.Name);
        var drifts = ReconcilePlanner.DriftOf(vm, info is null ? null : ActualVm.From(info));
        app.Out.WriteLine(CliOutput.Json(w => WriteState(w, vm.Name, info, drifts.Count == 0), indented: false));
        app.Out.WriteLine(CliOutput.Json(w => WriteNames(w, DscNames(drifts, stated)), indented: false));
        return ExitCodes.Ok;
    }

    private int Set()
    {
        var (vm, stated) = ReadDesired();
        var result = new Reconciler(app.Manager).Set(new DesiredHostState(new[] { StdinSource }, new[] { vm }));
        if (result.Failure is { } failure)
        {
            app.Err.WriteLine($"kvmps: {failure.Action.Description} failed: {failure.Message}");
            return failure.Error is { } e && CliApp.ExitCodeFor(e) == ExitCodes.Environment ? ExitCodes.Environment : ExitCodes.OperationFailed;
        }
        foreach (var warning in result.Plan.Warnings)
            app.Err.WriteLine($"kvmps: warning: {warning}");
        var after = app.Manager.TryGet(vm.Name);
        app.Out.WriteLine(CliOutput.Json(w => WriteState(w, vm.Name, after, null), indented: false));
        app.Out.WriteLine(CliOutput.Json(w => WriteNames(w, DscNames(result.Plan.Drifts, stated)), indented: false));
        return ExitCodes.Ok;
    }

    // ---- input ------------------------------------------------------------------------------------------

    private JsonElement ReadInstance()
    {
        var text = app.In.ReadToEnd();
        if (string.IsNullOrWhiteSpace(text))
            throw new DscInputException("dsc: expected a JSON object with the instance properties on stdin, got nothing");
        try
        {
            using var document = JsonDocument.Parse(text);
            if (document.RootElement.ValueKind != JsonValueKind.Object)
                throw new DscInputException($"dsc: the instance must be a JSON object, not {document.RootElement.ValueKind}");
            return document.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw new DscInputException($"dsc: the input is not valid JSON: {e.Message}", e);
        }
    }

    private static string RequiredName(JsonElement input)
    {
        foreach (var property in input.EnumerateObject())
            if (property.Name.Equals("Name", StringComparison.OrdinalIgnoreCase))
                return property.Value.ValueKind == JsonValueKind.String && VmName.IsValid(property.Value.GetString())
                    ? property.Value.GetString()!
                    : throw new DscInputException($"dsc: Name must be a VM name (1-63 letters, digits, '.', '_' or '-'), not {property.Value.GetRawText()}");
        throw new DscInputException("dsc: the instance needs a Name");
    }

    /// <summary>The instance as a desired VM, and the DSC properties it states.</summary>
    private (DesiredVm Vm, IReadOnlySet<string> Stated) ReadDesired()
    {
        var input = ReadInstance();
        var name = RequiredName(input);
        var values = new OrderedDictionary(StringComparer.OrdinalIgnoreCase);
        OrderedDictionary? boot = null;
        var stated = new HashSet<string>(StringComparer.Ordinal);
        var statedManifestKeys = new List<string>();
        foreach (var property in input.EnumerateObject())
        {
            // DSC's canonical _exist says whether the instance should exist; this resource says it with Ensure.
            // Skipping it like the other '_' metadata would create the VM that '"_exist": false' asks to remove.
            if (property.Name.Equals("_exist", StringComparison.OrdinalIgnoreCase))
                throw new DscInputException($"dsc: VM '{name}': _exist is not supported; use \"Ensure\": \"Absent\" or \"Present\"");
            if (property.Name.StartsWith('_') || property.Name == "$schema"
                || ReadOnlyProperties.Contains(property.Name, StringComparer.OrdinalIgnoreCase))
                continue;
            var match = Properties.FirstOrDefault(p => p.Dsc.Equals(property.Name, StringComparison.OrdinalIgnoreCase));
            if (match.Dsc is null)
                throw new DscInputException($"dsc: VM '{name}': unknown property '{property.Name}' (allowed: {string.Join(", ", Properties.Select(p => p.Dsc))})");
            if (property.Value.ValueKind == JsonValueKind.Null)
                continue;
            stated.Add(match.Dsc);
            var value = Plain(property.Value);
            if (match.Manifest.StartsWith("Boot.", StringComparison.Ordinal))
            {
                boot ??= new OrderedDictionary(StringComparer.OrdinalIgnoreCase);
                boot[match.Manifest["Boot.".Length..]] = value;
                statedManifestKeys.Add("Boot");
            }
            else
            {
                values[match.Manifest] = value;
                statedManifestKeys.Add(match.Manifest);
            }
        }
        if (boot is not null)
            values["Boot"] = boot;
        // StartupMemory may be left out (it is then not enforced); the schema needs a value to build a definition.
        if (!values.Contains("MemoryStartupBytes"))
            values["MemoryStartupBytes"] = app.Manager.TryGet(name)?.Definition.Memory.StartupBytes ?? DefaultStartupMemory;
        DesiredVm vm;
        try
        {
            vm = DesiredStateReader.FromDictionary(values, StdinSource);
        }
        catch (DesiredStateException e)
        {
            var key = e.Property is null ? null : DscName(e.Property);
            throw new DscInputException($"dsc: VM '{name}': {key ?? e.Property}: {e.Reason}", e);
        }
        return (vm with { ManagedProperties = DefinitionOverlay.ManagedFromKeys(statedManifestKeys) }, stated);
    }

    private static object? Plain(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.String => value.GetString(),
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        JsonValueKind.Null => null,
        JsonValueKind.Number => value.TryGetInt64(out var l) ? l : value.GetDouble(),
        JsonValueKind.Array => value.EnumerateArray().Select(Plain).ToArray(),
        JsonValueKind.Object => value.EnumerateObject().Aggregate(new OrderedDictionary(StringComparer.OrdinalIgnoreCase), (d, p) => { d[p.Name] = Plain(p.Value); return d; }),
        _ => value.GetRawText(),
    };

    // ---- output -----------------------------------------------------------------------------------------

    /// <summary>The actual state in DSC property names; <paramref name="inDesiredState"/> adds <c>_inDesiredState</c> (test).</summary>
    private static void WriteState(Utf8JsonWriter w, string name, VmInfo? info, bool? inDesiredState)
    {
        w.WriteStartObject();
        w.WriteString("Name", name);
        w.WriteString("Ensure", info is null ? "Absent" : "Present");
        if (info is not null)
        {
            var d = info.Definition;
            w.WriteString("State", info.State.ToString());
            w.WriteNumber("StartupMemory", d.Memory.StartupBytes);
            w.WriteNumber("MinimumMemory", d.Memory.MinimumBytes);
            w.WriteNumber("MaximumMemory", d.Memory.MaximumBytes);
            w.WriteNumber("ProcessorCount", d.Vcpus.Count);
            w.WriteNumber("MaximumProcessorCount", d.Vcpus.Maximum);
            w.WriteString("Notes", d.Notes);
            w.WriteBoolean("Autostart", d.Autostart);
            w.WriteNumber("CpuRelativeWeight", d.CpuRelativeWeight);
            w.WriteNumber("CpuMaximumPercent", d.CpuMaximumPercent);
            w.WriteNumber("VmmOverheadLimitBytes", d.VmmOverheadLimitBytes);
            if (d.Boot is DirectKernelBoot kernel)
            {
                w.WriteString("KernelPath", kernel.KernelPath);
                if (kernel.InitrdPath is { } initrd)
                    w.WriteString("InitrdPath", initrd);
                if (kernel.Cmdline is { } cmdline)
                    w.WriteString("KernelArguments", cmdline);
            }
            if (info.Pid is { } pid)
                w.WriteNumber("ProcessId", pid);
            if (info.Uptime is { } uptime)
                w.WriteNumber("Uptime", Math.Round(uptime.TotalSeconds, 3));
        }
        if (inDesiredState is { } ok)
            w.WriteBoolean("_inDesiredState", ok);
        w.WriteEndObject();
    }

    private static void WriteNames(Utf8JsonWriter w, IEnumerable<string> names)
    {
        w.WriteStartArray();
        foreach (var name in names)
            w.WriteStringValue(name);
        w.WriteEndArray();
    }

    /// <summary>Drifted schema properties as DSC property names (Boot → the boot properties the instance states).</summary>
    private static IEnumerable<string> DscNames(IEnumerable<Drift> drifts, IReadOnlySet<string> stated)
    {
        var names = new List<string>();
        foreach (var drift in drifts)
        {
            if (drift.Property == "Boot")
                names.AddRange(new[] { "KernelPath", "InitrdPath", "KernelArguments" }.Where(stated.Contains));
            else
                names.Add(DscName(drift.Property) ?? drift.Property);
        }
        return names.Distinct(StringComparer.Ordinal);
    }

    private static string? DscName(string manifestProperty)
    {
        var key = manifestProperty.Equals("Boot.Cmdline", StringComparison.OrdinalIgnoreCase) ? "Boot.Cmdline" : manifestProperty;
        var match = Properties.FirstOrDefault(p => p.Manifest.Equals(key, StringComparison.OrdinalIgnoreCase));
        return match.Dsc;
    }
}
