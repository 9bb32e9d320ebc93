using System.Globalization;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;

namespace KvmPS.Engine.Tests.RealLinux;

/// <summary>
/// The RealLinux test agent over vsock: <c>/init</c> runs <c>vsock serve 1024 /bin/agent</c>, so every connection to
/// guest port <see cref="Port"/> gets an agent of its own speaking the serial console's protocol
/// (<see cref="LinuxGuest"/>). The host reaches it through the vsock device's Unix socket (<c>uds_path</c>) with the
/// hybrid-vsock handshake: <c>CONNECT 1024\n</c>, answered <c>OK &lt;host port&gt;\n</c> once the guest accepts.
/// </summary>
internal sealed partial class VsockAgent : IDisposable
{
    /// <summary>The guest port of the agent server (tools/linux-guest/initramfs/init).</summary>
    public const uint Port = 1024;

    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly StreamReader _reader;
    private readonly Func<string> _diagnostics;
    private readonly StringBuilder _transcript = new();
    private int _nextId = 1;

    private VsockAgent(Socket socket, NetworkStream stream, StreamReader reader, Func<string> diagnostics)
    {
        _socket = socket;
        _stream = stream;
        _reader = reader;
        _diagnostics = diagnostics;
    }

    /// <summary>Every line the agent sent on this connection (for failure reports).</summary>
    public string Transcript => _transcript.ToString();

    /// <summary>
    /// Connects to the agent through <paramref name="udsPath"/> and waits for its ready line. A guest that does not
    /// listen yet (the server is a fork+exec of /init, seconds after the console agent) resets the request, which
    /// closes the host connection without a reply: that is retried until <paramref name="timeout"/>.
    /// </summary>
    public static VsockAgent Connect(string udsPath, TimeSpan timeout, Func<string> diagnostics)
    {
        var deadline = DateTime.UtcNow + timeout;
        string lastFailure = "no attempt";
        while (true)
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            NetworkStream? stream = null;
            try
            {
                socket.Connect(new UnixDomainSocketEndPoint(udsPath));
                stream = new NetworkStream(socket, ownsSocket: false) { ReadTimeout = (int)LinuxGuest.CommandTimeout.TotalMilliseconds };
                var reader = new StreamReader(stream, Encoding.ASCII, false, 1, leaveOpen: true);
                stream.Write(Encoding.ASCII.GetBytes($"CONNECT {Port}\n"));
                string? ok = reader.ReadLine();
                if (ok is not null && ok.StartsWith("OK ", StringComparison.Ordinal))
                {
                    var agent = new VsockAgent(socket, stream, reader, diagnostics);
                    // The agent is a fork+exec away from the accepted connection: it says ready once it reads.
                    agent.ReadUntil(ReadyPattern(), LinuxGuest.CommandTimeout, "the ready line");
                    return agent;
                }
                lastFailure = ok is null ? "the guest refused or did not answer CONNECT" : $"unexpected handshake reply '{ok}'";
            }
            catch (Exception e) when (e is SocketException or IOException)
            {
                lastFailure = e.Message;
            }
            stream?.Dispose();
            socket.Dispose();
            if (DateTime.UtcNow > deadline)
                throw new InvalidOperationException($"no vsock agent on guest port {Port} through {udsPath} within {timeout}: {lastFailure}.\n{diagnostics()}");
            Thread.Sleep(1000);
        }
    }

    [GeneratedRegex(@"^@agent 0 ready uptime=[0-9.]+ channel=vsock$")]
    private static partial Regex ReadyPattern();

    /// <summary>Runs one agent command, as <see cref="LinuxGuest.Run"/> does on the serial console.</summary>
    public IReadOnlyList<string> Run(string command, TimeSpan? timeout = null, int expectRc = 0)
    {
        int id = _nextId++;
        _stream.Write(Encoding.ASCII.GetBytes($"{id} {command}\n"));
        var prefix = $"@agent {id} ";
        var lines = ReadUntil(new Regex($"^@agent {id} done rc=(\\d+)$"), timeout ?? LinuxGuest.CommandTimeout, $"'{command}'");
        var done = lines[^1];
        int rc = int.Parse(done[(prefix.Length + "done rc=".Length)..], CultureInfo.InvariantCulture);
        var reply = lines.Where(l => l.StartsWith(prefix, StringComparison.Ordinal)).Select(l => l[prefix.Length..]).SkipLast(1).ToList();
        if (rc != expectRc)
            throw new InvalidOperationException($"vsock agent command '{command}' ended with rc={rc}:\n{string.Join('\n', reply)}\n{_diagnostics()}");
        return reply;
    }

    /// <summary>Reads lines until one matches <paramref name="last"/>; returns them all, that one last.</summary>
    private List<string> ReadUntil(Regex last, TimeSpan timeout, string what)
    {
        var lines = new List<string>();
        var deadline = DateTime.UtcNow + timeout;
        _stream.ReadTimeout = (int)Math.Max(1, (deadline - DateTime.UtcNow).TotalMilliseconds);
        while (true)
        {
            string? line;
            try { line = _reader.ReadLine(); }
            catch (IOException e)
            {
                throw new InvalidOperationException($"the vsock agent did not send {what} within {timeout}: {e.Message}\n--- vsock transcript ---\n{Transcript}\n{_diagnostics()}");
            }
            if (line is null)
                throw new InvalidOperationException($"the vsock agent closed the connection before {what}.\n--- vsock transcript ---\n{Transcript}\n{_diagnostics()}");
            _transcript.Append(line).Append('\n');
            lines.Add(line);
            if (last.IsMatch(line)) return lines;
        }
    }

    public void Dispose()
    {
        _reader.Dispose();
        _stream.Dispose();
        _socket.Dispose();
    }
}
