using System.Diagnostics;
using System.Text.Json;

namespace KvmPS.Bench;

/// <summary>
/// QMP: greeting, qmp_capabilities, then one command at a time. Events that arrive meanwhile are kept with QEMU's
/// own timestamp (the host's wall clock, microseconds) for <see cref="WaitForEvent"/>.
/// </summary>
internal sealed class Qmp : IDisposable
{
    private readonly LineClient line;
    private readonly List<(string Name, double UnixSeconds)> events = [];

    private Qmp(LineClient line) => this.line = line;

    public static Qmp Connect(string path, TimeSpan timeout) => Handshake(new LineClient(path, timeout));

    public static Qmp WaitFor(string path, Stopwatch clock, TimeSpan timeout) => Handshake(LineClient.WaitFor(path, clock, timeout));

    private static Qmp Handshake(LineClient line)
    {
        var qmp = new Qmp(line);
        qmp.line.Read().Dispose(); // greeting
        qmp.Execute("qmp_capabilities").Dispose();
        return qmp;
    }

    /// <summary>The next message that is not an event (events are kept).</summary>
    private JsonDocument Read()
    {
        while (true)
        {
            var message = line.Read();
            if (!Keep(message)) return message;
            message.Dispose();
        }
    }

    private bool Keep(JsonDocument message)
    {
        if (!message.RootElement.TryGetProperty("event", out var name)) return false;
        var ts = message.RootElement.GetProperty("timestamp");
        events.Add((name.GetString()!, ts.GetProperty("seconds").GetInt64() + ts.GetProperty("microseconds").GetInt64() / 1e6));
        return true;
    }

    public JsonDocument Execute(string command, object? arguments = null)
    {
        string json = arguments is null
            ? JsonSerializer.Serialize(new { execute = command })
            : JsonSerializer.Serialize(new { execute = command, arguments }); // QMP keys have hyphens: pass a dictionary
        var reply = line.Request(json);
        if (Keep(reply)) { reply.Dispose(); reply = Read(); }
        if (reply.RootElement.TryGetProperty("error", out var error)) throw new InvalidOperationException($"QMP {command}: {error}");
        return reply;
    }

    /// <summary>QEMU's timestamp (unix seconds) of the last <paramref name="name"/> event seen, reading on until one comes.</summary>
    public double WaitForEvent(string name)
    {
        while (true)
        {
            for (int i = events.Count - 1; i >= 0; i--)
                if (events[i].Name == name) return events[i].UnixSeconds;
            var message = line.Read(); // the socket's receive timeout ends a wait for an event that never comes
            if (!Keep(message)) { string text = message.RootElement.GetRawText(); message.Dispose(); throw new InvalidOperationException($"QMP: waiting for event {name}, got {text}"); }
            message.Dispose();
        }
    }

    public void Dispose() => line.Dispose();
}
