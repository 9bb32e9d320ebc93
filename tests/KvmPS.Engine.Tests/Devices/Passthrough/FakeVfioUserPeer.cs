using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using KvmPS.Interop;

namespace KvmPS.Engine.Tests.Devices.Passthrough;

/// <summary>One message as the fake peer received it: the header fields, the payload and the descriptors that came with it.</summary>
internal sealed record PeerMessage(ushort Id, ushort Command, uint Size, uint Flags, byte[] Payload, List<MemfdHandle> Fds);

/// <summary>
/// A scripted vfio-user server for protocol tests: listens on a socket in a temporary directory, accepts one client and
/// runs <c>script</c> on its own thread, which reads the client's messages and writes whatever replies (good or bad)
/// the test wants. Whatever the script throws is kept for the test to check.
/// </summary>
internal sealed class FakeVfioUserPeer : IDisposable
{
    private readonly Socket _listener;
    private readonly Thread _thread;
    private readonly string _dir;
    private Socket? _connection;
    public string SocketPath { get; }
    public Exception? ScriptError { get; private set; }
    public List<PeerMessage> Received { get; } = [];

    public FakeVfioUserPeer(Action<FakeVfioUserPeer> script)
    {
        _dir = Directory.CreateTempSubdirectory("kvmps-vfu-").FullName;
        SocketPath = Path.Combine(_dir, "dev.sock");
        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _listener.Bind(new UnixDomainSocketEndPoint(SocketPath));
        _listener.Listen(1);
        _thread = new Thread(() =>
        {
            try
            {
                _connection = _listener.Accept();
                script(this);
            }
            catch (Exception e) { ScriptError = e; }
        }) { IsBackground = true, Name = "fake-vfio-user" };
        _thread.Start();
    }

    public PeerMessage Read()
    {
        var header = new byte[16];
        var fds = new List<MemfdHandle>();
        if (!Vfio.ReceiveExactly(_connection!, header, fds)) throw new EndOfStreamException("the client closed the connection");
        uint size = BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(4));
        var payload = new byte[size - 16];
        if (payload.Length > 0) Vfio.ReceiveExactly(_connection!, payload, fds);
        var m = new PeerMessage(BinaryPrimitives.ReadUInt16LittleEndian(header), BinaryPrimitives.ReadUInt16LittleEndian(header.AsSpan(2)), size,
            BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(8)), payload, fds);
        lock (Received) Received.Add(m);
        return m;
    }

    /// <summary>Sends raw bytes: a reply, or anything malformed.</summary>
    public void SendRaw(byte[] bytes, IReadOnlyList<System.Runtime.InteropServices.SafeHandle>? fds = null) => Vfio.SendMessage(_connection!, bytes, fds ?? []);

    public static byte[] Message(ushort id, ushort command, uint flags, ReadOnlySpan<byte> payload, uint error = 0, uint? sizeField = null)
    {
        var m = new byte[16 + payload.Length];
        BinaryPrimitives.WriteUInt16LittleEndian(m, id);
        BinaryPrimitives.WriteUInt16LittleEndian(m.AsSpan(2), command);
        BinaryPrimitives.WriteUInt32LittleEndian(m.AsSpan(4), sizeField ?? (uint)m.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(m.AsSpan(8), flags);
        BinaryPrimitives.WriteUInt32LittleEndian(m.AsSpan(12), error);
        payload.CopyTo(m.AsSpan(16));
        return m;
    }

    /// <summary>Answers <paramref name="request"/> with <paramref name="payload"/> (a reply: same id and command).</summary>
    public void Reply(PeerMessage request, ReadOnlySpan<byte> payload, IReadOnlyList<System.Runtime.InteropServices.SafeHandle>? fds = null) =>
        SendRaw(Message(request.Id, request.Command, 1, payload), fds);

    public static byte[] VersionPayload(ushort major, ushort minor, string json)
    {
        var text = Encoding.UTF8.GetBytes(json + "\0");
        var p = new byte[4 + text.Length];
        BinaryPrimitives.WriteUInt16LittleEndian(p, major);
        BinaryPrimitives.WriteUInt16LittleEndian(p.AsSpan(2), minor);
        text.CopyTo(p, 4);
        return p;
    }

    /// <summary>Reads VERSION and answers 0.1 with <paramref name="maxMsgFds"/>.</summary>
    public void Handshake(int maxMsgFds = 8)
    {
        var v = Read();
        if (v.Command != 1) throw new InvalidOperationException($"the first message is command {v.Command}, not VERSION");
        Reply(v, VersionPayload(0, 1, $"{{\"capabilities\":{{\"max_msg_fds\":{maxMsgFds}}}}}"));
    }

    /// <summary>
    /// Serves a minimal PCI device until the client goes away: config space <paramref name="config"/> (region 7, 256
    /// bytes), no BARs, no interrupts; DMA_MAP, SET_IRQS, REGION_WRITE and RESET are acknowledged. Stops after
    /// <paramref name="maxMessages"/> messages (then closes: a server that dies).
    /// </summary>
    public void Serve(byte[] config, int maxMessages = int.MaxValue)
    {
        for (int n = 0; n < maxMessages; n++)
        {
            PeerMessage m;
            try { m = Read(); }
            catch (EndOfStreamException) { return; }
            var reply = m.Command switch
            {
                4 => Info(),
                5 => RegionInfo(BinaryPrimitives.ReadUInt32LittleEndian(m.Payload.AsSpan(8))),
                9 => [.. m.Payload.AsSpan(0, 16), .. config.AsSpan((int)BinaryPrimitives.ReadUInt64LittleEndian(m.Payload), (int)BinaryPrimitives.ReadUInt32LittleEndian(m.Payload.AsSpan(12)))],
                10 => m.Payload[..16],
                _ => Array.Empty<byte>(),
            };
            Reply(m, reply);
        }
        Close();

        static byte[] Info()
        {
            var p = new byte[16];
            BinaryPrimitives.WriteUInt32LittleEndian(p, 16);
            BinaryPrimitives.WriteUInt32LittleEndian(p.AsSpan(4), Vfio.VFIO_DEVICE_FLAGS_PCI | Vfio.VFIO_DEVICE_FLAGS_RESET);
            BinaryPrimitives.WriteUInt32LittleEndian(p.AsSpan(8), 9);
            BinaryPrimitives.WriteUInt32LittleEndian(p.AsSpan(12), 5);
            return p;
        }

        static byte[] RegionInfo(uint index)
        {
            var p = new byte[32];
            BinaryPrimitives.WriteUInt32LittleEndian(p, 32);
            BinaryPrimitives.WriteUInt32LittleEndian(p.AsSpan(8), index);
            if (index == 7)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(p.AsSpan(4), Vfio.VFIO_REGION_INFO_FLAG_READ | Vfio.VFIO_REGION_INFO_FLAG_WRITE);
                BinaryPrimitives.WriteUInt64LittleEndian(p.AsSpan(16), 256);
            }
            return p;
        }
    }

    /// <summary>A type-0 function's config space: vendor 0x4B56, device 0x0001, class 0xFF0000, no capabilities.</summary>
    public static byte[] MinimalConfig()
    {
        var c = new byte[256];
        BinaryPrimitives.WriteUInt16LittleEndian(c, 0x4B56);
        BinaryPrimitives.WriteUInt16LittleEndian(c.AsSpan(2), 0x0001);
        c[0x0B] = 0xFF;
        return c;
    }

    public void Close() => _connection?.Dispose();

    public void Join() => _thread.Join(TimeSpan.FromSeconds(10));

    public void Dispose()
    {
        _connection?.Dispose();
        _listener.Dispose();
        _thread.Join(TimeSpan.FromSeconds(5));
        foreach (var m in Received) foreach (var fd in m.Fds) fd.Dispose();
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }
}
