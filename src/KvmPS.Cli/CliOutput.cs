using System.Globalization;
using System.Text;
using System.Text.Json;
using KvmPS.Management.Definitions;
using KvmPS.Management.DesiredState;
using KvmPS.Management.Lifecycle;

namespace KvmPS.Cli;

/// <summary>Human tables and JSON documents for the CLI. JSON is written with Utf8JsonWriter (no reflection: AOT-clean).</summary>
internal static class CliOutput
{
    public static string Json(Action<Utf8JsonWriter> write, bool indented = true)
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = indented }))
            write(writer);
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    /// <summary>A table with a header row; columns padded to their widest cell.</summary>
    public static void Table(TextWriter output, IReadOnlyList<string> headers, IEnumerable<IReadOnlyList<string>> rows)
    {
        var all = new List<IReadOnlyList<string>> { headers };
        all.AddRange(rows);
        var widths = headers.Select((_, i) => all.Max(r => i < r.Count ? r[i].Length : 0)).ToArray();
        foreach (var row in all)
        {
            var line = new StringBuilder();
            for (var i = 0; i < headers.Count; i++)
            {
                var cell = i < row.Count ? row[i] : "";
                line.Append(i == headers.Count - 1 ? cell : cell.PadRight(widths[i] + 2));
            }
            output.WriteLine(line.ToString().TrimEnd());
        }
    }

    public static string Bytes(long bytes) => SizeParser.Format(bytes);

    public static string Uptime(TimeSpan? uptime) => uptime is not { } u ? "-"
        : u.TotalDays >= 1 ? $"{(int)u.TotalDays}d{u.Hours}h"
        : u.TotalHours >= 1 ? $"{(int)u.TotalHours}h{u.Minutes}m"
        : u.TotalMinutes >= 1 ? $"{(int)u.TotalMinutes}m{u.Seconds}s"
        : $"{u.Seconds}s";

    public static IReadOnlyList<string> VmHeaders { get; } = new[] { "NAME", "STATE", "VCPUS", "MEMORY", "PID", "UPTIME", "AUTOSTART" };

    public static IReadOnlyList<string> VmRow(VmInfo vm) => new[]
    {
        vm.Name,
        vm.State.ToString(),
        (vm.Live?.Vcpus ?? vm.Definition.Vcpus.Count).ToString(CultureInfo.InvariantCulture),
        Bytes(vm.Live?.MemoryCurrentBytes ?? vm.Definition.Memory.StartupBytes),
        vm.Pid?.ToString(CultureInfo.InvariantCulture) ?? "-",
        Uptime(vm.Uptime),
        vm.Definition.Autostart ? "yes" : "no",
    };

    public static void WriteVm(Utf8JsonWriter w, VmInfo vm)
    {
        w.WriteStartObject();
        w.WriteString("name", vm.Name);
        w.WriteString("state", vm.State.ToString());
        if (vm.StateReason is { } reason)
            w.WriteString("stateReason", reason);
        else
            w.WriteNull("stateReason");
        if (vm.Pid is { } pid)
            w.WriteNumber("pid", pid);
        else
            w.WriteNull("pid");
        w.WriteNumber("vcpuCount", vm.Definition.Vcpus.Count);
        w.WriteNumber("vcpuMaximum", vm.Definition.Vcpus.Maximum);
        w.WriteNumber("memoryStartupBytes", vm.Definition.Memory.StartupBytes);
        w.WriteNumber("memoryMinimumBytes", vm.Definition.Memory.MinimumBytes);
        w.WriteNumber("memoryMaximumBytes", vm.Definition.Memory.MaximumBytes);
        if (vm.Live is { } live)
        {
            w.WriteNumber("liveVcpus", live.Vcpus);
            w.WriteNumber("liveMemoryBytes", live.MemoryCurrentBytes);
            if (live.MemoryRequestedBytes is { } requested)
                w.WriteNumber("liveMemoryRequestedBytes", requested);
            if (live.MemoryMaximumBytes is { } maximum)
                w.WriteNumber("liveMemoryMaximumBytes", maximum);
        }
        if (vm.Uptime is { } up)
            w.WriteNumber("uptimeSeconds", Math.Round(up.TotalSeconds, 3));
        w.WriteBoolean("autostart", vm.Definition.Autostart);
        w.WriteString("boot", vm.Definition.Boot switch
        {
            DirectKernelBoot k => "kernel:" + k.KernelPath,
            FirmwareBoot f => "firmware:" + f.FirmwarePath,
            _ => "built-in",
        });
        w.WriteString("notes", vm.Definition.Notes);
        w.WriteString("directory", vm.VmDirectory);
        w.WriteString("serialLog", vm.SerialLogPath);
        w.WriteEndObject();
    }

    public static void WriteDrift(Utf8JsonWriter w, Drift d)
    {
        w.WriteStartObject();
        w.WriteString("vmName", d.VmName);
        w.WriteString("property", d.Property);
        WriteNullable(w, "expected", d.Expected);
        WriteNullable(w, "actual", d.Actual);
        w.WriteEndObject();
    }

    public static void WriteAction(Utf8JsonWriter w, ReconcileAction a)
    {
        w.WriteStartObject();
        w.WriteString("kind", a.Kind.ToString());
        w.WriteString("vmName", a.VmName);
        w.WriteString("description", a.Description);
        w.WriteString("reason", a.Reason);
        w.WriteStartArray("changes");
        foreach (var change in a.Changes)
            WriteDrift(w, change);
        w.WriteEndArray();
        w.WriteEndObject();
    }

    public static void WritePlan(Utf8JsonWriter w, ReconcilePlan plan)
    {
        w.WriteBoolean("inDesiredState", plan.InDesiredState);
        w.WriteStartArray("actions");
        foreach (var a in plan.Actions)
            WriteAction(w, a);
        w.WriteEndArray();
        w.WriteStartArray("drift");
        foreach (var d in plan.Drifts)
            WriteDrift(w, d);
        w.WriteEndArray();
        w.WriteStartArray("warnings");
        foreach (var warning in plan.Warnings)
            w.WriteStringValue(warning);
        w.WriteEndArray();
    }

    public static void WriteNullable(Utf8JsonWriter w, string name, string? value)
    {
        if (value is null)
            w.WriteNull(name);
        else
            w.WriteString(name, value);
    }
}
