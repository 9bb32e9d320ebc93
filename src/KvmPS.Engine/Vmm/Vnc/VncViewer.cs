using System.Buffers.Binary;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using KvmPS.Devices.Display;

namespace KvmPS.Vmm.Vnc;

/// <summary>A client that broke the protocol; its connection is closed, nothing else is affected.</summary>
public sealed class RfbProtocolException(string message) : Exception(message);

/// <summary>
/// One viewer's connection (RFC 6143) on its own thread: handshake, then a loop that reads client messages and, while
/// the viewer has a FramebufferUpdateRequest pending, polls the framebuffer (<see cref="VncServerLimits.PollIntervalMs"/>,
/// backing off while nothing changes) for rows changed since this viewer's own generation, and sends the blocks of
/// them that differ from what it last sent (VncViewer.Updates.cs). Idle, it sleeps in poll(2) on the socket.
/// </summary>
internal sealed partial class VncViewer : IDisposable
{
    private const int EncodingRaw = 0, EncodingZrle = 16, EncodingDesktopSize = -223;
    public const int MaxCutTextBytes = 1 << 20, MaxEncodings = 1024;
    
    private readonly Socket _socket;
    private readonly NetworkStream _net;
    private readonly BufferedStream _out;
    private readonly VncServer _server;
    private readonly bool _authenticate;
    private readonly byte[] _in = new byte[32];
    private RfbPixelFormat _format = RfbPixelFormat.Default;
    private int _encoding = EncodingRaw;
    private bool _desktopSize;
    private ZrleEncoder? _zrle;

    // What the viewer has been told and seen.
    private int _width, _height;
    private FramebufferMode _mode;
    private long _seen;
    private (bool Incremental, int X, int Y, int W, int H)? _pending;
    private long _nextPollTicks;
    private int _pollIntervalMs;

    public VncViewer(Socket socket, VncServer server, bool authenticate)
    {
        _socket = socket;
        _server = server;
        _authenticate = authenticate;
        _net = new NetworkStream(socket, ownsSocket: true);
        _out = new BufferedStream(_net, 64 * 1024);
        _pollIntervalMs = server.Limits.PollIntervalMs;
    }

    /// <summary>Serves the viewer until it leaves, breaks the protocol, stops reading, or the server stops.</summary>
    public void Run()
    {
        try
        {
            _socket.ReceiveTimeout = _server.Limits.HandshakeTimeoutMs;
            _socket.SendTimeout = _server.Limits.SendTimeoutMs;
            if (!Handshake()) return;
            _socket.ReceiveTimeout = _server.Limits.MessageTimeoutMs;
            Loop();
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or RfbProtocolException or EndOfStreamException)
        {
            if (e is RfbProtocolException) _server.Log($"vnc: viewer dropped: {e.Message}");
        }
        catch (Exception e)
        {
            // A bug here must cost one connection, never the VMM.
            _server.Log($"vnc: viewer dropped after an internal error: {e.GetType().Name}: {e.Message}");
        }
    }

    private bool Handshake()
    {
        int minor = VncServer.NegotiateVersion(_net, _in);
        int type = _authenticate ? 2 : 1;
        if (minor == 3) WriteU32(_out, (uint)type);
        else
        {
            _out.Write([1, (byte)type]);
            _out.Flush();
            Read(1);
            if (_in[0] != type) { Refuse(minor, $"security type {_in[0]} was not offered"); return false; }
        }
        _out.Flush();
        if (_authenticate)
        {
            var challenge = new byte[VncAuthentication.ChallengeBytes];
            RandomNumberGenerator.Fill(challenge);
            _out.Write(challenge);
            _out.Flush();
            Read(VncAuthentication.ChallengeBytes);
            if (!VncAuthentication.Check(_server.Password!, challenge, _in.AsSpan(0, VncAuthentication.ChallengeBytes)))
            {
                _server.Log("vnc: a viewer gave a wrong password");
                Thread.Sleep(_server.Limits.AuthFailureDelayMs); // slows guessing down
                Refuse(minor, "authentication failed");
                return false;
            }
        }
        if (_authenticate || minor == 8) WriteU32(_out, 0); // SecurityResult OK (3.3 and 3.7 send none for type None)
        _out.Flush();
        Read(1); // ClientInit: the shared flag; every viewer shares the display
        SendServerInit();
        return true;
    }

    private void Refuse(int minor, string reason)
    {
        WriteU32(_out, 1);
        if (minor == 8) WriteString(_out, reason);
        _out.Flush();
    }

    private void SendServerInit()
    {
        (_width, _height, _mode) = CurrentSize();
        Span<byte> b = stackalloc byte[4 + RfbPixelFormat.WireBytes];
        BinaryPrimitives.WriteUInt16BigEndian(b, (ushort)_width);
        BinaryPrimitives.WriteUInt16BigEndian(b[2..], (ushort)_height);
        _format.Write(b[4..]);
        _out.Write(b);
        WriteString(_out, _server.DesktopName);
        _out.Flush();
        _seen = 0; // the first update request sends everything
    }

    /// <summary>The size to show: the display's mode, or a small black desktop while it is blank.</summary>
    private (int Width, int Height, FramebufferMode Mode) CurrentSize()
    {
        var mode = _server.Target.Framebuffer?.Mode ?? default;
        return mode.IsBlank ? (VncServer.BlankWidth, VncServer.BlankHeight, mode) : (Math.Min(mode.Width, ushort.MaxValue), Math.Min(mode.Height, ushort.MaxValue), mode);
    }

    private void Loop()
    {
        while (!_server.Stopping)
        {
            if (_pending is not null && Environment.TickCount64 >= _nextPollTicks)
            {
                long started = Environment.TickCount64;
                var limits = _server.Limits;
                // Nothing new: look again later and later (an idle screen); something sent: back to the short interval.
                _pollIntervalMs = TrySendUpdate() ? limits.PollIntervalMs
                    : Math.Max(limits.PollIntervalMs, Math.Min(_pollIntervalMs * 2, limits.PollIdleMaxIntervalMs));
                _nextPollTicks = started + _pollIntervalMs;
            }
            int waitMs = _pending is null ? 1000 : Math.Max(1, (int)(_nextPollTicks - Environment.TickCount64));
            if (_socket.Poll(waitMs * 1000, SelectMode.SelectRead)) ReadMessage();
        }
    }

    private void ReadMessage()
    {
        if (_net.Read(_in, 0, 1) == 0) throw new EndOfStreamException();
        switch (_in[0])
        {
            case 0: // SetPixelFormat
                Read(3 + RfbPixelFormat.WireBytes);
                var format = RfbPixelFormat.Read(_in.AsSpan(3));
                if (format.Problem() is { } problem) throw new RfbProtocolException($"SetPixelFormat asks for {problem}");
                _format = format;
                break;
            case 2: // SetEncodings
                Read(3);
                int count = BinaryPrimitives.ReadUInt16BigEndian(_in.AsSpan(1));
                if (count > MaxEncodings) throw new RfbProtocolException($"SetEncodings lists {count} encodings (at most {MaxEncodings})");
                _encoding = EncodingRaw;
                _desktopSize = false;
                bool chosen = false;
                for (int i = 0; i < count; i++)
                {
                    Read(4);
                    int e = BinaryPrimitives.ReadInt32BigEndian(_in);
                    if (e == EncodingDesktopSize) _desktopSize = true;
                    else if (!chosen && e is EncodingRaw or EncodingZrle) { _encoding = e; chosen = true; } // the viewer's first preference we have
                }
                break;
            case 3: // FramebufferUpdateRequest
                Read(9);
                var s = _in.AsSpan();
                _pending = (s[0] != 0, BinaryPrimitives.ReadUInt16BigEndian(s[1..]), BinaryPrimitives.ReadUInt16BigEndian(s[3..]),
                    BinaryPrimitives.ReadUInt16BigEndian(s[5..]), BinaryPrimitives.ReadUInt16BigEndian(s[7..]));
                if (!_pending.Value.Incremental) _nextPollTicks = 0; // a full update goes out at once
                break;
            case 4: // KeyEvent
                Read(7);
                _server.Target.Input?.KeyEvent(BinaryPrimitives.ReadUInt32BigEndian(_in.AsSpan(3)), _in[0] != 0);
                PollSoon();
                break;
            case 5: // PointerEvent
                Read(5);
                _server.Target.Input?.PointerEvent(BinaryPrimitives.ReadUInt16BigEndian(_in.AsSpan(1)), BinaryPrimitives.ReadUInt16BigEndian(_in.AsSpan(3)), _in[0]);
                PollSoon();
                break;
            case 6: // ClientCutText: read and dropped (the guest has no clipboard channel)
                Read(7);
                uint length = BinaryPrimitives.ReadUInt32BigEndian(_in.AsSpan(3));
                if (length > MaxCutTextBytes) throw new RfbProtocolException($"ClientCutText of {length} bytes (at most {MaxCutTextBytes})");
                for (uint left = length; left > 0;)
                {
                    int n = (int)Math.Min(left, (uint)_in.Length);
                    Read(n);
                    left -= (uint)n;
                }
                break;
            default:
                throw new RfbProtocolException($"unknown client message type {_in[0]}");
        }
    }

    /// <summary>Input from the viewer: the screen is likely to change, so the idle back-off ends.</summary>
    private void PollSoon()
    {
        _pollIntervalMs = _server.Limits.PollIntervalMs;
        _nextPollTicks = Math.Min(_nextPollTicks, Environment.TickCount64 + _pollIntervalMs);
    }

    private void WriteRectHeader(int x, int y, int w, int h, int encoding)
    {
        Span<byte> b = stackalloc byte[12];
        BinaryPrimitives.WriteUInt16BigEndian(b, (ushort)x);
        BinaryPrimitives.WriteUInt16BigEndian(b[2..], (ushort)y);
        BinaryPrimitives.WriteUInt16BigEndian(b[4..], (ushort)w);
        BinaryPrimitives.WriteUInt16BigEndian(b[6..], (ushort)h);
        BinaryPrimitives.WriteInt32BigEndian(b[8..], encoding);
        _out.Write(b);
    }

    private void Read(int count) => _net.ReadExactly(_in, 0, count);

    internal static void WriteU32(Stream s, uint value)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(b, value);
        s.Write(b);
    }

    internal static void WriteString(Stream s, string text)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(text);
        WriteU32(s, (uint)bytes.Length);
        s.Write(bytes);
    }

    public void Dispose()
    {
        try { _socket.Shutdown(SocketShutdown.Both); } catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
        _net.Dispose();
        _zrle?.Dispose();
    }
}
