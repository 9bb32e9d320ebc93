using System.Text.Json;

namespace KvmPS.Management.Vmm;

/// <summary>The VM state kvmps-vmm reports (<c>status.state</c>).</summary>
public enum VmmState
{
    /// <summary>A state this client does not know (newer VMM); see <see cref="VmmStatus.StateText"/>.</summary>
    Unknown,
    Created,
    Running,
    Paused,
    Stopped,
    Crashed,
}

public sealed record VmmVcpuState(int Id, string State);

/// <summary>How the VM ended (<c>status.exit</c>); present once it has.</summary>
/// <param name="Kind"><c>PowerOff</c>, <c>Reset</c>, <c>DebugExit</c>, <c>Stopped</c> or <c>Crashed</c>.</param>
/// <param name="Registers">On a crash: the failing vCPU's registers as the VMM formats them (hex strings).</param>
public sealed record VmmExitInfo(string Kind, string? Reason, int? DebugExitValue, IReadOnlyDictionary<string, string>? Registers);

/// <summary>Reply to <c>status</c> (also returned by <c>pause</c>/<c>resume</c>).</summary>
/// <param name="AcpiPowerButton">
/// The guest handles ACPI power-button requests (it enabled ACPI and the power-button event), so a graceful stop
/// can work; null from a VMM older than the field.
/// </param>
public sealed record VmmStatus(
    VmmState State,
    string StateText,
    int Boots,
    TimeSpan Uptime,
    bool NestedPvm,
    IReadOnlyList<VmmVcpuState> Vcpus,
    VmmExitInfo? Exit,
    bool? AcpiPowerButton = null)
{
    internal static VmmStatus Parse(JsonElement result)
    {
        var stateText = result.RequiredString("state");
        var state = Enum.TryParse<VmmState>(stateText, ignoreCase: false, out var s) && s != VmmState.Unknown ? s : VmmState.Unknown;
        VmmExitInfo? exit = null;
        if (result.TryGetProperty("exit", out var e) && e.ValueKind == JsonValueKind.Object)
        {
            Dictionary<string, string>? registers = null;
            if (e.TryGetProperty("registers", out var r) && r.ValueKind == JsonValueKind.Object)
            {
                registers = new Dictionary<string, string>(StringComparer.Ordinal);
                foreach (var p in r.EnumerateObject())
                    registers[p.Name] = p.Value.ValueKind == JsonValueKind.String ? p.Value.GetString()! : p.Value.GetRawText();
            }
            exit = new VmmExitInfo(e.OptionalString("kind") ?? "", e.OptionalString("reason"), (int?)e.OptionalInt64("debug_exit_value"), registers);
        }
        return new VmmStatus(
            state,
            stateText,
            (int)(result.OptionalInt64("boots") ?? 0),
            TimeSpan.FromMilliseconds(result.OptionalInt64("uptime_ms") ?? 0),
            result.OptionalBool("nested_pvm") ?? false,
            ParseVcpus(result),
            exit,
            result.OptionalBool("acpi_power_button"));
    }

    internal static IReadOnlyList<VmmVcpuState> ParseVcpus(JsonElement result)
    {
        var list = new List<VmmVcpuState>();
        if (result.TryGetProperty("vcpus", out var v) && v.ValueKind == JsonValueKind.Array)
            foreach (var item in v.EnumerateArray())
                list.Add(new VmmVcpuState((int)(item.OptionalInt64("id") ?? list.Count), item.OptionalString("state") ?? ""));
        return list;
    }
}

/// <summary>Reply to <c>describe</c>: the configuration the VMM is actually running with.</summary>
public sealed record VmmDescription(
    string Vmm,
    string Version,
    int Pid,
    string? Kernel,
    string? Initrd,
    string? Cmdline,
    long MemoryBytes,
    int Vcpus,
    int MaxVcpus,
    string? HugePages,
    bool Ksm,
    int? NumaNode,
    string? Serial,
    string? ControlSocket,
    string? OnReset,
    string? OnCrash,
    bool NestedPvm,
    IReadOnlyList<string> Requests)
{
    internal static VmmDescription Parse(JsonElement r)
    {
        var requests = new List<string>();
        if (r.TryGetProperty("requests", out var q) && q.ValueKind == JsonValueKind.Array)
            foreach (var item in q.EnumerateArray())
                if (item.ValueKind == JsonValueKind.String)
                    requests.Add(item.GetString()!);
        return new VmmDescription(
            r.OptionalString("vmm") ?? "",
            r.OptionalString("version") ?? "",
            (int)(r.OptionalInt64("pid") ?? 0),
            r.OptionalString("kernel"),
            r.OptionalString("initrd"),
            r.OptionalString("cmdline"),
            r.OptionalInt64("memory_bytes") ?? 0,
            (int)(r.OptionalInt64("vcpus") ?? 0),
            (int)(r.OptionalInt64("max_vcpus") ?? 0),
            r.OptionalString("hugepages"),
            r.OptionalBool("ksm") ?? false,
            (int?)r.OptionalInt64("numa_node"),
            r.OptionalString("serial"),
            r.OptionalString("control_socket"),
            r.OptionalString("on_reset"),
            r.OptionalString("on_crash"),
            r.OptionalBool("nested_pvm") ?? false,
            requests);
    }
}

public sealed record VmmVcpuMetrics(int Id, string State, long IoExits, long MmioExits);

/// <summary>Reply to <c>metrics</c>.</summary>
public sealed record VmmMetrics(
    IReadOnlyDictionary<string, long> Exits,
    IReadOnlyList<VmmVcpuMetrics> Vcpus,
    long RssBytes,
    long GuestRssBytes,
    long VmmRssBytes,
    long ConsoleBytes,
    long PostCodeWrites,
    TimeSpan Uptime,
    TimeSpan SinceExec,
    bool NestedPvm)
{
    internal static VmmMetrics Parse(JsonElement r)
    {
        var exits = new Dictionary<string, long>(StringComparer.Ordinal);
        if (r.TryGetProperty("exits", out var e) && e.ValueKind == JsonValueKind.Object)
            foreach (var p in e.EnumerateObject())
                if (p.Value.ValueKind == JsonValueKind.Number && p.Value.TryGetInt64(out var n))
                    exits[p.Name] = n;
        var vcpus = new List<VmmVcpuMetrics>();
        if (r.TryGetProperty("vcpus", out var v) && v.ValueKind == JsonValueKind.Array)
            foreach (var item in v.EnumerateArray())
                vcpus.Add(new VmmVcpuMetrics((int)(item.OptionalInt64("id") ?? vcpus.Count), item.OptionalString("state") ?? "",
                    item.OptionalInt64("io_exits") ?? 0, item.OptionalInt64("mmio_exits") ?? 0));
        return new VmmMetrics(
            exits,
            vcpus,
            r.OptionalInt64("rss_bytes") ?? 0,
            r.OptionalInt64("guest_rss_bytes") ?? 0,
            r.OptionalInt64("vmm_rss_bytes") ?? 0,
            r.OptionalInt64("console_bytes") ?? 0,
            r.OptionalInt64("post_code_writes") ?? 0,
            TimeSpan.FromMilliseconds(r.OptionalInt64("uptime_ms") ?? 0),
            TimeSpan.FromMilliseconds(r.OptionalInt64("since_exec_ms") ?? 0),
            r.OptionalBool("nested_pvm") ?? false);
    }
}

/// <summary>Reply to <c>stop</c>. The VMM process exits right after sending it.</summary>
/// <param name="Forced">The guest did not power off by itself (in time); the VM was stopped by force.</param>
/// <param name="PowerButtonPressed">The ACPI power button was pressed (the guest had enabled it).</param>
/// <param name="State">The VM state when stopping finished.</param>
/// <param name="Outcome">
/// Why it ended so (<c>PoweredOff</c>, <c>TimedOut</c>, <c>NoAcpi</c>, <c>Paused</c>, <c>Forced</c>, <c>NotRunning</c>;
/// docs/vmm.md); null from a VMM older than the field.
/// </param>
/// <param name="Waited">How long the VMM waited for the guest after pressing the power button.</param>
public sealed record VmmStopResult(bool Forced, bool PowerButtonPressed, string State, string? Outcome = null, TimeSpan Waited = default)
{
    internal static VmmStopResult Parse(JsonElement r) =>
        new(r.OptionalBool("forced") ?? false, r.OptionalBool("power_button") ?? false, r.OptionalString("state") ?? "",
            r.OptionalString("outcome"), TimeSpan.FromMilliseconds(r.OptionalInt64("waited_ms") ?? 0));
}

/// <summary>Lenient readers: a missing or differently typed optional field reads as null.</summary>
internal static class JsonElementExtensions
{
    public static string? OptionalString(this JsonElement e, string name) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    public static long? OptionalInt64(this JsonElement e, string name) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out var n) ? n : null;

    public static bool? OptionalBool(this JsonElement e, string name) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : null;

    public static string RequiredString(this JsonElement e, string name) =>
        e.OptionalString(name) ?? throw new FormatException($"the result has no string '{name}'");
}
