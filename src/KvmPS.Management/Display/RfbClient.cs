using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;

namespace KvmPS.Management.Display;

/// <summary>
/// A minimal RFB 3.8 client (RFC 6143) that takes one picture of a VNC server's screen: it negotiates None or VNC
/// authentication, joins as a shared client (other viewers stay), asks for 32 bpp true colour in Raw encoding plus the
/// DesktopSize pseudo-encoding, requests one full (non-incremental) update and returns the pixels. Every read has
/// a deadline; every failure is an <see cref="RfbException"/> naming the endpoint.
/// </summary>
public sealed class RfbClient : IDisposable
{
    /// <summary>Largest framebuffer accepted (RFB sizes are 16-bit; this bounds what a server can make us allocate).</summary>
    public const int MaximumPixels = 8192 * 8192;

    public const int EncodingRaw = 0;
    public const int EncodingDesktopSize = -223;

    private const byte SecurityNone = 1;
    private const byte SecurityVncAuth = 2;

    private readonly Socket _socket;
    private readonly DateTime _deadline;

    private RfbClient(Socket socket, string endpoint, DateTime deadline)
    {
        _socket = socket;
        Endpoint = endpoint;
        _deadline = deadline;
    }

    /// <summary><c>unix:PATH</c> or <c>tcp:ADDR:PORT</c>, for messages.</summary>
    public string Endpoint { get; }

    public int Width { get; private set; }
    public int Height { get; private set; }

    /// <summary>The desktop name the server announced.</summary>
    public string DesktopName { get; private set; } = "";

    /// <summary>
    /// Connects to <paramref name="unixPath"/> or (when null) <paramref name="tcp"/> (<c>ADDR:PORT</c>) and completes the
    /// handshake. <paramref name="password"/> is used when the server asks for VNC authentication.
    /// </summary>
    public static RfbClient Connect(string? unixPath, string? tcp, string? password, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        var endpointText = unixPath is not null ? "unix:" + unixPath : "tcp:" + tcp;
        EndPoint endpoint;
        Socket socket;
        if (unixPath is not null)
        {
            endpoint = new UnixDomainSocketEndPoint(unixPath);
            socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        }
        else
        {
            var ip = ParseTcp(tcp ?? throw new ArgumentException("either a Unix socket path or a TCP address is needed"));
            endpoint = ip;
            socket = new Socket(ip.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        }
        var client = new RfbClient(socket, endpointText, deadline);
        try
        {
            try
            {
                var connect = socket.ConnectAsync(endpoint);
                if (!connect.Wait(Remaining(deadline)))
                    throw new RfbException(endpointText, $"connecting took longer than {timeout.TotalSeconds:0.#} s");
                connect.GetAwaiter().GetResult();
            }
            catch (Exception e) when (e is SocketException or AggregateException)
            {
                var inner = (e as AggregateException)?.InnerException ?? e;
                throw new RfbException(endpointText, $"cannot connect ({inner.Message})", inner);
            }
            client.Handshake(password);
            return client;
        }
        catch
        {
            client.Dispose();
            throw;
        }
    }

    private static IPEndPoint ParseTcp(string tcp)
    {
        var colon = tcp.LastIndexOf(':');
        if (colon <= 0 || !IPAddress.TryParse(tcp[..colon].Trim('[', ']'), out var address)
            || !int.TryParse(tcp[(colon + 1)..], out var port) || port is < 1 or > 65535)
            throw new RfbException("tcp:" + tcp, "is not ADDR:PORT with an IP address");
        return new IPEndPoint(address, port);
    }

    private void Handshake(string? password)
    {
        var version = Encoding.ASCII.GetString(ReadExactly(12));
        if (!version.StartsWith("RFB ", StringComparison.Ordinal) || version[^1] != '\n')
            throw Fail($"is not an RFB (VNC) server: it greeted with \"{Printable(version)}\"");
        if (string.CompareOrdinal(version, "RFB 003.008\n") < 0)
            throw Fail($"speaks {version.Trim()}, this client needs RFB 3.8");
        Write("RFB 003.008\n"u8);

        int count = ReadExactly(1)[0];
        if (count == 0)
            throw Fail($"refused the connection: {ReadReason()}");
        var types = ReadExactly(count);
        byte chosen;
        if (types.Contains(SecurityNone))
            chosen = SecurityNone;
        else if (types.Contains(SecurityVncAuth))
            chosen = password is not null ? SecurityVncAuth : throw Fail("asks for a VNC password, and none was given (the VM's Display.PasswordFile)");
        else
            throw Fail($"offers only security types {string.Join(", ", types)}; this client speaks None (1) and VNC authentication (2)");
        Write([chosen]);
        if (chosen == SecurityVncAuth)
        {
            var challenge = ReadExactly(16);
            byte[] response;
            try
            {
                response = VncAuthResponse(password!, challenge);
            }
            catch (ArgumentException e)
            {
                throw Fail("asks for a VNC password: " + e.Message.Split(" (Parameter")[0], e);
            }
            Write(response);
        }
        uint result = BinaryPrimitives.ReadUInt32BigEndian(ReadExactly(4));
        if (result != 0)
            throw Fail(chosen == SecurityVncAuth ? $"refused the password: {ReadReason()}" : $"refused the connection: {ReadReason()}");

        Write([1]); // ClientInit, shared: other viewers stay connected
        var init = ReadExactly(24);
        SetSize(BinaryPrimitives.ReadUInt16BigEndian(init), BinaryPrimitives.ReadUInt16BigEndian(init.AsSpan(2)));
        uint nameLength = BinaryPrimitives.ReadUInt32BigEndian(init.AsSpan(20));
        if (nameLength > 4096)
            throw Fail($"announced a desktop name of {nameLength} bytes");
        DesktopName = Encoding.UTF8.GetString(ReadExactly((int)nameLength));

        // SetPixelFormat: 32 bpp, depth 24, little-endian, true colour, 8 bits each at R 16, G 8, B 0 = BGRX in memory.
        var format = new byte[20];
        format[0] = 0;
        format[4] = 32; format[5] = 24; format[6] = 0; format[7] = 1;
        BinaryPrimitives.WriteUInt16BigEndian(format.AsSpan(8), 255);
        BinaryPrimitives.WriteUInt16BigEndian(format.AsSpan(10), 255);
        BinaryPrimitives.WriteUInt16BigEndian(format.AsSpan(12), 255);
        format[14] = 16; format[15] = 8; format[16] = 0;
        Write(format);
        var encodings = new byte[4 + 8];
        encodings[0] = 2;
        BinaryPrimitives.WriteUInt16BigEndian(encodings.AsSpan(2), 2);
        BinaryPrimitives.WriteInt32BigEndian(encodings.AsSpan(4), EncodingRaw);
        BinaryPrimitives.WriteInt32BigEndian(encodings.AsSpan(8), EncodingDesktopSize);
        Write(encodings);
    }

    /// <summary>
    /// One full picture, as BGRX bytes (4 per pixel, rows top to bottom). A resize announced meanwhile (DesktopSize)
    /// restarts the request at the new size.
    /// </summary>
    public RfbFrame CaptureFrame()
    {
        var pixels = new byte[Width * Height * 4];
        RequestFull();
        for (int updates = 0; ; )
        {
            int type = ReadExactly(1)[0];
            switch (type)
            {
                case 0: // FramebufferUpdate
                    var header = ReadExactly(3);
                    int rectangles = BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(1));
                    bool resized = false;
                    for (int r = 0; r < rectangles; r++)
                    {
                        var rect = ReadExactly(12);
                        int x = BinaryPrimitives.ReadUInt16BigEndian(rect), y = BinaryPrimitives.ReadUInt16BigEndian(rect.AsSpan(2));
                        int w = BinaryPrimitives.ReadUInt16BigEndian(rect.AsSpan(4)), h = BinaryPrimitives.ReadUInt16BigEndian(rect.AsSpan(6));
                        int encoding = BinaryPrimitives.ReadInt32BigEndian(rect.AsSpan(8));
                        if (encoding == EncodingDesktopSize)
                        {
                            SetSize(w, h);
                            pixels = new byte[Width * Height * 4];
                            resized = true;
                        }
                        else if (encoding == EncodingRaw)
                            ReadRaw(pixels, x, y, w, h);
                        else
                            throw Fail($"sent encoding {encoding}, which was not asked for (only Raw and DesktopSize)");
                    }
                    if (!resized)
                        return new RfbFrame(Width, Height, pixels);
                    if (++updates > 16)
                        throw Fail("keeps changing the screen size; no stable picture");
                    RequestFull();
                    break;
                case 1: // SetColourMapEntries: not used in true colour, but legal to send
                    var map = ReadExactly(5);
                    ReadExactly(BinaryPrimitives.ReadUInt16BigEndian(map.AsSpan(3)) * 6);
                    break;
                case 2: // Bell
                    break;
                case 3: // ServerCutText
                    var cut = ReadExactly(7);
                    uint length = BinaryPrimitives.ReadUInt32BigEndian(cut.AsSpan(3));
                    if (length > 1 << 20)
                        throw Fail($"sent {length} bytes of clipboard text");
                    ReadExactly((int)length);
                    break;
                default:
                    throw Fail($"sent message type {type}, which RFB 3.8 does not define for servers");
            }
        }
    }

    private void ReadRaw(byte[] pixels, int x, int y, int w, int h)
    {
        if (x + w > Width || y + h > Height)
            throw Fail($"sent a {w}x{h} rectangle at {x},{y}, outside its {Width}x{Height} screen");
        var row = new byte[w * 4];
        for (int line = 0; line < h; line++)
        {
            ReadInto(row);
            Buffer.BlockCopy(row, 0, pixels, ((y + line) * Width + x) * 4, row.Length);
        }
    }

    private void RequestFull()
    {
        var request = new byte[10];
        request[0] = 3; // FramebufferUpdateRequest, incremental = 0
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(6), (ushort)Width);
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(8), (ushort)Height);
        Write(request);
    }

    private void SetSize(int width, int height)
    {
        if (width <= 0 || height <= 0 || (long)width * height > MaximumPixels)
            throw Fail($"announced a screen of {width}x{height} pixels");
        Width = width;
        Height = height;
    }

    /// <summary>
    /// VNC authentication's answer: the 16-byte challenge DES-encrypted (ECB) with the password's first 8 bytes as key,
    /// each key byte's bits reversed (the original VNC's quirk, which every server follows).
    /// </summary>
    public static byte[] VncAuthResponse(string password, ReadOnlySpan<byte> challenge)
    {
        var key = new byte[8];
        var bytes = Encoding.Latin1.GetBytes(password);
        for (int i = 0; i < 8 && i < bytes.Length; i++)
        {
            byte b = bytes[i], reversed = 0;
            for (int bit = 0; bit < 8; bit++)
                if ((b & (1 << bit)) != 0)
                    reversed |= (byte)(0x80 >> bit);
            key[i] = reversed;
        }
        using var des = DES.Create();
        try
        {
            des.Key = key;
        }
        catch (CryptographicException e)
        {
            // .NET refuses DES's weak keys; an empty password is one (all zeros).
            throw new ArgumentException("the VNC password makes a DES weak key (an empty password does); choose another password", nameof(password), e);
        }
        return des.EncryptEcb(challenge, PaddingMode.None);
    }

    private string ReadReason()
    {
        uint length = BinaryPrimitives.ReadUInt32BigEndian(ReadExactly(4));
        return length > 4096 ? $"(a reason of {length} bytes)" : Encoding.UTF8.GetString(ReadExactly((int)length));
    }

    private byte[] ReadExactly(int count)
    {
        var buffer = new byte[count];
        ReadInto(buffer);
        return buffer;
    }

    private void ReadInto(byte[] buffer)
    {
        int done = 0;
        while (done < buffer.Length)
        {
            var left = Remaining(_deadline);
            if (left <= TimeSpan.Zero)
                throw Fail("did not send a full picture in time");
            _socket.ReceiveTimeout = Math.Max(1, (int)left.TotalMilliseconds);
            int n;
            try
            {
                n = _socket.Receive(buffer, done, buffer.Length - done, SocketFlags.None);
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.TimedOut)
            {
                throw Fail("did not send a full picture in time", e);
            }
            catch (SocketException e)
            {
                throw Fail($"connection failed ({e.Message})", e);
            }
            if (n == 0)
                throw Fail("closed the connection");
            done += n;
        }
    }

    private void Write(ReadOnlySpan<byte> data)
    {
        try
        {
            _socket.SendTimeout = Math.Max(1, (int)Remaining(_deadline).TotalMilliseconds);
            _socket.Send(data);
        }
        catch (SocketException e)
        {
            throw Fail($"connection failed ({e.Message})", e);
        }
    }

    private static TimeSpan Remaining(DateTime deadline) => deadline - DateTime.UtcNow;

    private RfbException Fail(string reason, Exception? inner = null) => new(Endpoint, reason, inner);

    private static string Printable(string text) => new(text.Select(c => c is >= ' ' and < '\x7f' ? c : '.').ToArray());

    public void Dispose() => _socket.Dispose();
}

/// <summary>One picture: <see cref="Bgrx"/> holds 4 bytes a pixel (blue, green, red, unused), rows top to bottom.</summary>
public sealed record RfbFrame(int Width, int Height, byte[] Bgrx)
{
    /// <summary>The pixel at (<paramref name="x"/>, <paramref name="y"/>) as 0xRRGGBB.</summary>
    public int Rgb(int x, int y)
    {
        int i = (y * Width + x) * 4;
        return (Bgrx[i + 2] << 16) | (Bgrx[i + 1] << 8) | Bgrx[i];
    }
}

/// <summary>A VNC server could not be reached or did not give a picture. Names the endpoint (and, through <see cref="VmName"/>, the VM).</summary>
public sealed class RfbException : Exception
{
    public RfbException(string endpoint, string reason, Exception? inner = null, string? vmName = null)
        : base((vmName is null ? "" : $"VM '{vmName}': ") + $"VNC server {endpoint} {reason}", inner)
    {
        Endpoint = endpoint;
        Reason = reason;
        VmName = vmName;
    }

    public string Endpoint { get; }
    public string Reason { get; }
    public string? VmName { get; }

    public RfbException ForVm(string vmName) => new(Endpoint, Reason, InnerException, vmName);
}
