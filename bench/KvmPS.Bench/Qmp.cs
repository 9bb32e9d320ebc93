using System.Diagnostics;
using System.Text.Json;

namespace KvmPS.Bench;

/// <summary>QMP: greeting, qmp_capabilities, then one command at a time (events are skipped).</summary>
internal sealed class Qmp : IDisposable
{
    private readonly LineClient line;

    private Qmp(LineClient line) => this.line = line;

    public static Qmp Connect(string path, TimeSpan timeout) => Handshake(new LineClient(path, timeout));

    public static Qmp WaitFor(string path, Stopwatch clock, TimeSpan timeout) => Handshake(LineClient.WaitFor(path, clock, timeout));

    private static Qmp Handshake(LineClient line)
    {
        var qmp = new Qmp(line);
        qmp.Read().Dispose(); // greeting
        qmp.Execute("qmp_capabilities").Dispose();
        return qmp;
    }

    private JsonDocument Read() => line.Read();

    public JsonDocument Execute(string command, object? arguments = null)
    {
        string json = arguments is null
            ? JsonSerializer.Serialize(new { execute = command })
            : JsonSerializer.Serialize(new { execute = command, arguments }); // QMP keys have hyphens: pass a dictionary
        var reply = line.Request(json);
        while (reply.RootElement.TryGetProperty("event", out _)) { reply.Dispose(); reply = Read(); }
        if (reply.RootElement.TryGetProperty("error", out var error)) throw new InvalidOperationException($"QMP {command}: {error}");
        return reply;
    }

    public void Dispose() => line.Dispose();
}
