using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using KvmPS.Interop;

namespace KvmPS.Engine.Tests.Devices.VfioUser;

/// <summary>The vfio-user test device server (tests/KvmPS.VfioUserTestDevice) as a child process on a private socket.</summary>
internal sealed class VfioUserTestServer : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _stderr = new();
    private readonly string _dir;
    public string SocketPath { get; }

    public VfioUserTestServer(params string[] options)
    {
        string dll = Path.Combine(AppContext.BaseDirectory, "KvmPS.VfioUserTestDevice.dll");
        Assert.True(File.Exists(dll), $"test helper {dll} was not built");
        _dir = Directory.CreateTempSubdirectory("vfu-").FullName;
        SocketPath = Path.Combine(_dir, "device.sock");
        var psi = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(dll);
        psi.ArgumentList.Add("--socket");
        psi.ArgumentList.Add(SocketPath);
        foreach (string o in options) psi.ArgumentList.Add(o);
        _process = Process.Start(psi)!;
        _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_stderr) _stderr.AppendLine(e.Data); };
        _process.BeginErrorReadLine();
        string? line = _process.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(30)).GetAwaiter().GetResult();
        Assert.True(line?.StartsWith("listening on ") == true, $"server did not start: stdout '{line}', stderr: {Stderr}");
    }

    public string Stderr { get { lock (_stderr) return _stderr.ToString(); } }
    public Process Process => _process;

    public VfioUserTestClient Connect() => new(SocketPath);

    public void Dispose()
    {
        try { if (!_process.HasExited) _process.Kill(); _process.WaitForExit(5000); } catch (InvalidOperationException) { }
        _process.Dispose();
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }
}

/// <summary>A reply as the test client received it.</summary>
internal sealed record VfioUserReply(ushort Id, ushort Command, uint SizeBytes, uint Flags, uint Errno, byte[] Payload, List<MemfdHandle> Fds)
{
    public bool IsError => (Flags & 0x20) != 0;
}

/// <summary>
/// A minimal vfio-user client for the server's protocol tests, written from the spec independently of the engine's
/// client: raw messages in, raw replies out, so malformed input can be sent on purpose.
/// </summary>
internal sealed unsafe class VfioUserTestClient : IDisposable
{
    public const ushort VERSION = 1, DMA_MAP = 2, DMA_UNMAP = 3, DEVICE_GET_INFO = 4, DEVICE_GET_REGION_INFO = 5,
        DEVICE_GET_IRQ_INFO = 7, DEVICE_SET_IRQS = 8, REGION_READ = 9, REGION_WRITE = 10, DEVICE_RESET = 13;
    public const int EINVAL = 22, ENOSYS = 38, ENOENT = 2, EEXIST = 17;
    private readonly Socket _socket;
    private ushort _nextId;

    public VfioUserTestClient(string path)
    {
        _socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _socket.Connect(new UnixDomainSocketEndPoint(path));
        _socket.ReceiveTimeout = 10000;
    }

    public void SendRaw(ReadOnlySpan<byte> bytes, IReadOnlyList<SafeHandle>? fds = null)
    {
        int sent = fds is { Count: > 0 } ? UnixFdPassing.Send(_socket, bytes, fds) : 0;
        while (sent < bytes.Length) sent += _socket.Send(bytes[sent..]);
    }

    public static byte[] Frame(ushort id, ushort command, ReadOnlySpan<byte> payload, uint? claimedSize = null)
    {
        var bytes = new byte[16 + payload.Length];
        BinaryPrimitives.WriteUInt16LittleEndian(bytes, id);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(2), command);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(4), claimedSize ?? (uint)bytes.Length);
        payload.CopyTo(bytes.AsSpan(16));
        return bytes;
    }

    /// <summary>Sends a command and waits for its reply.</summary>
    public VfioUserReply Call(ushort command, ReadOnlySpan<byte> payload, params SafeHandle[] fds)
    {
        ushort id = _nextId++;
        SendRaw(Frame(id, command, payload), fds);
        var reply = ReadReply(maxPayloadBytes: 2 << 20);
        Assert.Equal(id, reply.Id);
        Assert.Equal(command, reply.Command);
        return reply;
    }

    /// <summary>Reads one reply; a claimed size over <paramref name="maxPayloadBytes"/> is returned with the payload unread.</summary>
    public VfioUserReply ReadReply(int maxPayloadBytes)
    {
        var fds = new List<MemfdHandle>();
        var header = new byte[16];
        ReadExactly(header, fds);
        uint size = BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(4));
        byte[] payload = size >= 16 && size - 16 <= (uint)maxPayloadBytes ? new byte[size - 16] : [];
        if (payload.Length > 0) ReadExactly(payload, fds);
        return new VfioUserReply(BinaryPrimitives.ReadUInt16LittleEndian(header), BinaryPrimitives.ReadUInt16LittleEndian(header.AsSpan(2)),
            size, BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(8)), BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(12)), payload, fds);
    }

    private void ReadExactly(Span<byte> buffer, List<MemfdHandle> fds)
    {
        int at = 0;
        while (at < buffer.Length)
        {
            int got = UnixFdPassing.Receive(_socket, buffer[at..], fds);
            if (got == 0) throw new EndOfStreamException($"server closed the socket after {at} of {buffer.Length} bytes");
            at += got;
        }
    }

    /// <summary>True when the server has closed the connection (a read sees the end of the stream).</summary>
    public bool PeerClosed()
    {
        var b = new byte[1];
        try { return _socket.Receive(b) == 0; }
        catch (SocketException) { return true; }
    }

    // Typed helpers for the commands the tests use.
    public VfioUserReply Version(ushort major = 0, ushort minor = 1, string json = "{\"capabilities\":{\"max_msg_fds\":8}}")
    {
        byte[] text = Encoding.UTF8.GetBytes(json);
        var p = new byte[4 + text.Length + 1];
        BinaryPrimitives.WriteUInt16LittleEndian(p, major);
        BinaryPrimitives.WriteUInt16LittleEndian(p.AsSpan(2), minor);
        text.CopyTo(p, 4);
        return Call(VERSION, p);
    }

    public VfioUserReply RegionInfo(uint index, uint argsz = 64)
    {
        var p = new byte[32];
        BinaryPrimitives.WriteUInt32LittleEndian(p, argsz);
        BinaryPrimitives.WriteUInt32LittleEndian(p.AsSpan(8), index);
        return Call(DEVICE_GET_REGION_INFO, p);
    }

    public byte[] Read(uint region, ulong offset, uint count)
    {
        var p = new byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(p, offset);
        BinaryPrimitives.WriteUInt32LittleEndian(p.AsSpan(8), region);
        BinaryPrimitives.WriteUInt32LittleEndian(p.AsSpan(12), count);
        var r = Call(REGION_READ, p);
        Assert.False(r.IsError, $"REGION_READ region {region} offset 0x{offset:x} count {count}: errno {r.Errno}");
        Assert.Equal(p, r.Payload[..16]);
        return r.Payload[16..];
    }

    public uint Read32(uint region, ulong offset) => BinaryPrimitives.ReadUInt32LittleEndian(Read(region, offset, 4));

    public VfioUserReply Write(uint region, ulong offset, ReadOnlySpan<byte> data)
    {
        var p = new byte[16 + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(p, offset);
        BinaryPrimitives.WriteUInt32LittleEndian(p.AsSpan(8), region);
        BinaryPrimitives.WriteUInt32LittleEndian(p.AsSpan(12), (uint)data.Length);
        data.CopyTo(p.AsSpan(16));
        return Call(REGION_WRITE, p);
    }

    public void Write32(uint region, ulong offset, uint value)
    {
        var d = new byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(d, value);
        var r = Write(region, offset, d);
        Assert.False(r.IsError, $"REGION_WRITE region {region} offset 0x{offset:x}: errno {r.Errno}");
    }

    public VfioUserReply DmaMap(ulong address, ulong size, ulong offset, uint flags, SafeHandle? fd)
    {
        var p = new byte[32];
        BinaryPrimitives.WriteUInt32LittleEndian(p, 32);
        BinaryPrimitives.WriteUInt32LittleEndian(p.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt64LittleEndian(p.AsSpan(8), offset);
        BinaryPrimitives.WriteUInt64LittleEndian(p.AsSpan(16), address);
        BinaryPrimitives.WriteUInt64LittleEndian(p.AsSpan(24), size);
        return fd is null ? Call(DMA_MAP, p) : Call(DMA_MAP, p, fd);
    }

    public VfioUserReply DmaUnmap(ulong address, ulong size, uint flags = 0)
    {
        var p = new byte[24];
        BinaryPrimitives.WriteUInt32LittleEndian(p, 24);
        BinaryPrimitives.WriteUInt32LittleEndian(p.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt64LittleEndian(p.AsSpan(8), address);
        BinaryPrimitives.WriteUInt64LittleEndian(p.AsSpan(16), size);
        return Call(DMA_UNMAP, p);
    }

    public VfioUserReply SetIrqs(uint flags, uint index, uint start, uint count, ReadOnlySpan<byte> data, params SafeHandle[] fds)
    {
        var p = new byte[20 + data.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(p, (uint)p.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(p.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt32LittleEndian(p.AsSpan(8), index);
        BinaryPrimitives.WriteUInt32LittleEndian(p.AsSpan(12), start);
        BinaryPrimitives.WriteUInt32LittleEndian(p.AsSpan(16), count);
        data.CopyTo(p.AsSpan(20));
        return Call(DEVICE_SET_IRQS, p, fds);
    }

    public void Dispose() => _socket.Dispose();
}
