using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace KvmPS.Bench;

/// <summary>A newline-delimited JSON connection (kvmps-vmm's control socket).</summary>
public sealed class LineClient : IDisposable
{
    private readonly Socket socket;
    private readonly StreamReader reader;

    public LineClient(string path, TimeSpan timeout)
    {
        socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { ReceiveTimeout = (int)timeout.TotalMilliseconds };
        socket.Connect(new UnixDomainSocketEndPoint(path));
        reader = new StreamReader(new NetworkStream(socket, ownsSocket: false), Encoding.UTF8);
    }

    public static LineClient WaitFor(string path, Stopwatch clock, TimeSpan timeout)
    {
        while (true)
        {
            try { return new LineClient(path, timeout); }
            catch (SocketException) when (clock.Elapsed < timeout) { Thread.Sleep(1); }
        }
    }

    public JsonDocument Request(string json)
    {
        socket.Send(Encoding.UTF8.GetBytes(json + "\n"));
        return Read();
    }

    public JsonDocument Read() => JsonDocument.Parse(reader.ReadLine() ?? throw new IOException("control socket closed"));

    public void Dispose() { reader.Dispose(); socket.Dispose(); }
}
