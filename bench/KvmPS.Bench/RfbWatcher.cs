using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;

namespace KvmPS.Bench;

/// <summary>
/// A VNC viewer that keeps watching (figures 11): RFB 3.8 over a Unix socket, security None, shared, 32 bpp true
/// colour, one encoding (ZRLE or Raw) plus DesktopSize; a full update first, then an incremental request sent as soon
/// as each update has been read, as a real viewer does. Rectangles are read and counted, not decoded (a ZRLE
/// rectangle is skipped by its length): the viewer's own cost is not what is measured. Counters are read while it
/// runs on its own thread.
/// </summary>
internal sealed class RfbWatcher : IDisposable
{
    public const int EncodingRaw = 0, EncodingZrle = 16, EncodingDesktopSize = -223;

    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly Thread _thread;
    private readonly byte[] _skip = new byte[64 * 1024];
    private volatile bool _stopping;
    private long _updates, _rectangles, _bytes;

    public int Width { get; private set; }
    public int Height { get; private set; }
    /// <summary>Set when the read loop ended for another reason than <see cref="Dispose"/>.</summary>
    public Exception? Failure { get; private set; }
    public (long Updates, long Rectangles, long Bytes) Counters => (Interlocked.Read(ref _updates), Interlocked.Read(ref _rectangles), Interlocked.Read(ref _bytes));

    private RfbWatcher(string path, int encoding, TimeSpan timeout)
    {
        _socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { ReceiveTimeout = (int)timeout.TotalMilliseconds };
        _socket.Connect(new UnixDomainSocketEndPoint(path));
        _stream = new NetworkStream(_socket, ownsSocket: true);
        try { Handshake(encoding); }
        catch
        {
            _stream.Dispose();
            throw;
        }
        _thread = new Thread(Loop) { IsBackground = true, Name = "rfb-watcher" };
        _thread.Start();
    }

    /// <summary>Connects and starts watching; waits for the first (full) update.</summary>
    public static RfbWatcher Start(string path, int encoding, TimeSpan timeout)
    {
        var w = new RfbWatcher(path, encoding, timeout);
        var until = DateTime.UtcNow + timeout;
        while (w.Counters.Updates == 0)
        {
            if (w.Failure is { } e) { w.Dispose(); throw new InvalidOperationException($"VNC viewer on {path}: {e.Message}", e); }
            if (DateTime.UtcNow > until) { w.Dispose(); throw new TimeoutException($"VNC server {path} sent no first update"); }
            Thread.Sleep(5);
        }
        return w;
    }

    private void Handshake(int encoding)
    {
        string version = Encoding.ASCII.GetString(Read(12));
        if (!version.StartsWith("RFB 003.", StringComparison.Ordinal)) throw new InvalidDataException($"not an RFB server: '{version.Trim()}'");
        _stream.Write("RFB 003.008\n"u8);
        int n = Read(1)[0];
        if (n == 0) throw new InvalidDataException("the server refused the connection");
        if (!Read(n).Contains((byte)1)) throw new InvalidDataException("the server does not offer security None");
        _stream.WriteByte(1);
        if (BinaryPrimitives.ReadUInt32BigEndian(Read(4)) != 0) throw new InvalidDataException("security None refused");
        _stream.WriteByte(1); // shared
        var init = Read(24);
        Width = BinaryPrimitives.ReadUInt16BigEndian(init);
        Height = BinaryPrimitives.ReadUInt16BigEndian(init.AsSpan(2));
        Read((int)BinaryPrimitives.ReadUInt32BigEndian(init.AsSpan(20)));
        // SetPixelFormat: 32 bpp, depth 24, little-endian true colour, R at 16, G at 8, B at 0 (both servers' own).
        var format = new byte[20];
        format[4] = 32; format[5] = 24; format[7] = 1;
        BinaryPrimitives.WriteUInt16BigEndian(format.AsSpan(8), 255);
        BinaryPrimitives.WriteUInt16BigEndian(format.AsSpan(10), 255);
        BinaryPrimitives.WriteUInt16BigEndian(format.AsSpan(12), 255);
        format[14] = 16; format[15] = 8;
        _stream.Write(format);
        var encodings = new byte[12];
        encodings[0] = 2;
        BinaryPrimitives.WriteUInt16BigEndian(encodings.AsSpan(2), 2);
        BinaryPrimitives.WriteInt32BigEndian(encodings.AsSpan(4), encoding);
        BinaryPrimitives.WriteInt32BigEndian(encodings.AsSpan(8), EncodingDesktopSize);
        _stream.Write(encodings);
        Request(incremental: false);
    }

    private void Request(bool incremental)
    {
        var b = new byte[10];
        b[0] = 3; b[1] = (byte)(incremental ? 1 : 0);
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(6), (ushort)Width);
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(8), (ushort)Height);
        _stream.Write(b);
    }

    private void Loop()
    {
        try
        {
            // Only the wait for an update may be long: an idle screen sends nothing.
            _socket.ReceiveTimeout = 0;
            while (!_stopping)
            {
                int type = Read(1)[0];
                switch (type)
                {
                    case 0:
                        int rects = BinaryPrimitives.ReadUInt16BigEndian(Read(3).AsSpan(1));
                        long bytes = 4;
                        for (int i = 0; i < rects; i++)
                        {
                            var h = Read(12);
                            int w = BinaryPrimitives.ReadUInt16BigEndian(h.AsSpan(4)), ht = BinaryPrimitives.ReadUInt16BigEndian(h.AsSpan(6));
                            int enc = BinaryPrimitives.ReadInt32BigEndian(h.AsSpan(8));
                            bytes += 12;
                            if (enc == EncodingRaw) { Skip((long)w * ht * 4); bytes += (long)w * ht * 4; }
                            else if (enc == EncodingZrle) { long len = BinaryPrimitives.ReadUInt32BigEndian(Read(4)); Skip(len); bytes += 4 + len; }
                            else if (enc == EncodingDesktopSize) { Width = w; Height = ht; }
                            else throw new InvalidDataException($"encoding {enc} was not asked for");
                        }
                        Interlocked.Add(ref _rectangles, rects);
                        Interlocked.Add(ref _bytes, bytes);
                        Interlocked.Increment(ref _updates);
                        Request(incremental: true);
                        break;
                    case 1: Read(BinaryPrimitives.ReadUInt16BigEndian(Read(5).AsSpan(3)) * 6); break; // colour map entries
                    case 2: break; // bell
                    case 3: Skip(BinaryPrimitives.ReadUInt32BigEndian(Read(7).AsSpan(3))); break; // server cut text
                    default: throw new InvalidDataException($"server message type {type}");
                }
            }
        }
        catch (Exception e) when (!_stopping) { Failure = e; }
        catch (Exception) { }
    }

    private byte[] Read(int n)
    {
        var b = new byte[n];
        _stream.ReadExactly(b);
        return b;
    }

    private void Skip(long n)
    {
        while (n > 0)
        {
            int k = (int)Math.Min(n, _skip.Length);
            _stream.ReadExactly(_skip, 0, k);
            n -= k;
        }
    }

    public void Dispose()
    {
        _stopping = true;
        try { _socket.Shutdown(SocketShutdown.Both); } catch (SocketException) { } catch (ObjectDisposedException) { }
        _stream.Dispose();
        _thread.Join(2000);
    }
}
