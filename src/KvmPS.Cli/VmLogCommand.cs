using KvmPS.Management.SerialConsole;

namespace KvmPS.Cli;

/// <summary>
/// <c>kvmps vm log NAME [--tail N] [--json]</c>: the VM's serial console output (serial.log) as Get-KvmConsoleLog
/// reads it, which runs it on -HostName. Plain: the lines as they are; --json: <c>{"name", "lines": [...]}</c>.
/// A VM that never ran has no lines (not an error).
/// </summary>
internal sealed class VmLogCommand(CliApp app)
{
    public int Run(ParsedArgs options)
    {
        var p = options.Positionals("vm log", "vm log NAME [--tail N] [--json]", 1, 1);
        int? tail = null;
        if (options.Value("--tail") is { } text)
            tail = int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var n)
                ? n : throw new UsageException($"vm log: --tail must be a whole number of lines (got '{text}')");
        var lines = SerialLogReader.ReadLines(app.Manager.SerialLogPath(p[0]), tail);
        if (options.Has("--json"))
        {
            app.Out.WriteLine(CliOutput.Json(w =>
            {
                w.WriteStartObject();
                w.WriteString("name", p[0]);
                w.WriteStartArray("lines");
                foreach (var line in lines)
                    w.WriteStringValue(line);
                w.WriteEndArray();
                w.WriteEndObject();
            }));
            return ExitCodes.Ok;
        }
        foreach (var line in lines)
            app.Out.WriteLine(line);
        return ExitCodes.Ok;
    }
}
