using System.Buffers.Binary;
using System.IO.Compression;
using System.Net.Sockets;
using KvmPS.Devices.Display;
using KvmPS.Vmm.Vnc;

namespace KvmPS.Engine.Tests.Vmm.Vnc;

/// <summary>An in-memory display: pixels 0x00RRGGBB, a generation per row written, a mode that can change.</summary>
internal sealed class FakeFramebuffer : IFramebuffer
{
    private readonly object _lock = new();
    private uint[] _pixels = [];
    private long[] _rowGeneration = [];
    private long _generation = 1;
    private FramebufferMode _mode;
    public int Refreshes;

    public FakeFramebuffer(int width, int height) => SetMode(width, height);

    public void SetMode(int width, int height)
    {
        lock (_lock)
        {
            _mode = width == 0 ? default : new FramebufferMode(width, height, 32, width * 4, 0);
            _pixels = new uint[width * height];
            _rowGeneration = new long[height];
            _generation++;
        }
    }

    public void Fill(Func<int, int, uint> colour)
    {
        lock (_lock)
        {
            _generation++;
            for (int y = 0; y < _mode.Height; y++)
            {
                for (int x = 0; x < _mode.Width; x++) _pixels[y * _mode.Width + x] = colour(x, y);
                _rowGeneration[y] = _generation;
            }
        }
    }

    public void Set(int x, int y, uint rgb)
    {
        lock (_lock)
        {
            _generation++;
            _pixels[y * _mode.Width + x] = rgb;
            _rowGeneration[y] = _generation;
        }
    }

    public FramebufferMode Mode { get { lock (_lock) return _mode; } }

    public long Refresh() { Interlocked.Increment(ref Refreshes); lock (_lock) return _generation; }

    public void ChangedRows(long since, FramebufferMode mode, Span<bool> rows)
    {
        lock (_lock)
            for (int y = 0; y < rows.Length; y++) rows[y] = since == 0 || mode != _mode || (y < _rowGeneration.Length && _rowGeneration[y] > since);
    }

    public void CopyPixels(FramebufferMode mode, int x, int y, int width, int height, Span<uint> destination)
    {
        lock (_lock)
            for (int j = 0; j < height; j++)
                for (int i = 0; i < width; i++)
                {
                    int sx = x + i, sy = y + j;
                    destination[j * width + i] = sx < _mode.Width && sy < _mode.Height ? _pixels[sy * _mode.Width + sx] : 0;
                }
    }
}

internal sealed class RecordingInput : IVncInput
{
    public readonly List<(uint Keysym, bool Down)> Keys = [];
    public readonly List<(int X, int Y, byte Buttons)> Pointer = [];
    public void KeyEvent(uint keysym, bool down) { lock (Keys) Keys.Add((keysym, down)); }
    public void PointerEvent(int x, int y, byte buttons) { lock (Pointer) Pointer.Add((x, y, buttons)); }
}

internal sealed class Target(IFramebuffer? fb, IVncInput? input) : IVncTarget
{
    public IFramebuffer? Framebuffer => fb;
    public IVncInput? Input => input;
}

/// <summary>A minimal RFB viewer for the tests: handshake, requests, and a decoder of Raw, ZRLE and DesktopSize written from RFC 6143.</summary>
internal sealed class TestViewer : IDisposable
{
    public readonly Socket Socket;
    public readonly NetworkStream Stream;
    public int Width, Height, Minor = 8;
    public string Name = "";
    public RfbPixelFormat Format = RfbPixelFormat.Default;
    public uint[] Screen = [];
    private readonly FeedStream _zrleFeed = new();
    private ZLibStream? _zrle;

    private TestViewer(Socket socket)
    {
        Socket = socket;
        Socket.ReceiveTimeout = 10_000;
        Stream = new NetworkStream(socket, ownsSocket: true);
    }

    public static TestViewer ConnectUnix(string path)
    {
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        s.Connect(new UnixDomainSocketEndPoint(path));
        return new TestViewer(s);
    }

    public static TestViewer ConnectTcp(System.Net.IPEndPoint endpoint)
    {
        var s = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        s.Connect(endpoint);
        return new TestViewer(s);
    }

    public byte[] Read(int n) { var b = new byte[n]; Stream.ReadExactly(b); return b; }
    public uint U32() => BinaryPrimitives.ReadUInt32BigEndian(Read(4));
    public ushort U16() => BinaryPrimitives.ReadUInt16BigEndian(Read(2));
    public void Write(params byte[] b) => Stream.Write(b);

    /// <summary>Version and security; returns the security types offered (3.7/3.8) and leaves the viewer before the result.</summary>
    public byte[] Greet(string version = "RFB 003.008\n")
    {
        Assert.Equal("RFB 003.008\n", System.Text.Encoding.ASCII.GetString(Read(12)));
        Write(System.Text.Encoding.ASCII.GetBytes(version));
        int n = Read(1)[0];
        return Read(n);
    }

    /// <summary>A whole handshake with security None (or VNC auth with <paramref name="password"/>), then ServerInit.</summary>
    public TestViewer Handshake(string? password = null)
    {
        var types = Greet();
        byte type = password is null ? (byte)1 : (byte)2;
        Assert.Equal([type], types);
        Write(type);
        if (password is not null) Write(VncAuthentication.Response(password, Read(16)));
        Assert.Equal(0u, U32());
        Write(1); // shared
        Width = U16(); Height = U16();
        Format = RfbPixelFormat.Read(Read(16));
        Name = System.Text.Encoding.UTF8.GetString(Read((int)U32()));
        Screen = new uint[Width * Height];
        return this;
    }

    public void SetEncodings(params int[] encodings)
    {
        var b = new byte[4 + 4 * encodings.Length];
        b[0] = 2;
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(2), (ushort)encodings.Length);
        for (int i = 0; i < encodings.Length; i++) BinaryPrimitives.WriteInt32BigEndian(b.AsSpan(4 + 4 * i), encodings[i]);
        Write(b);
    }

    public void SetPixelFormat(RfbPixelFormat format)
    {
        var b = new byte[20];
        format.Write(b.AsSpan(4));
        Write(b);
        Format = format;
    }

    public void Request(bool incremental, int x = 0, int y = 0, int w = -1, int h = -1)
    {
        var b = new byte[10];
        b[0] = 3; b[1] = (byte)(incremental ? 1 : 0);
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(2), (ushort)x);
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(4), (ushort)y);
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(6), (ushort)(w < 0 ? Width : w));
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(8), (ushort)(h < 0 ? Height : h));
        Write(b);
    }

    /// <summary>Reads one FramebufferUpdate into <see cref="Screen"/>; returns its rectangles.</summary>
    public List<(int X, int Y, int W, int H, int Encoding)> ReadUpdate()
    {
        Assert.Equal(0, Read(1)[0]);
        Read(1);
        int count = U16();
        var rects = new List<(int, int, int, int, int)>();
        for (int i = 0; i < count; i++)
        {
            int x = U16(), y = U16(), w = U16(), h = U16();
            int encoding = (int)U32();
            rects.Add((x, y, w, h, encoding));
            switch (encoding)
            {
                case -223: Width = w; Height = h; Screen = new uint[w * h]; break;
                case 0:
                    for (int j = 0; j < h; j++) for (int k = 0; k < w; k++) Screen[(y + j) * Width + x + k] = ReadPixel(Stream, Format.BytesPerPixel);
                    break;
                case 16: DecodeZrle(x, y, w, h); break;
                default: throw new InvalidDataException($"encoding {encoding}");
            }
        }
        return rects;
    }

    private uint ReadPixel(Stream s, int bytes)
    {
        var b = new byte[bytes];
        s.ReadExactly(b);
        return bytes switch
        {
            1 => b[0],
            2 => Format.BigEndian ? BinaryPrimitives.ReadUInt16BigEndian(b) : BinaryPrimitives.ReadUInt16LittleEndian(b),
            3 => b[0] | (uint)b[1] << 8 | (uint)b[2] << 16, // CPIXEL, little-endian low bytes (the default format)
            _ => Format.BigEndian ? BinaryPrimitives.ReadUInt32BigEndian(b) : BinaryPrimitives.ReadUInt32LittleEndian(b),
        };
    }

    private void DecodeZrle(int x, int y, int w, int h)
    {
        int length = (int)U32();
        _zrleFeed.Add(Read(length));
        _zrle ??= new ZLibStream(_zrleFeed, CompressionMode.Decompress);
        int cp = Format.BitsPerPixel == 32 && Format.Depth <= 24 ? 3 : Format.BytesPerPixel;
        for (int ty = 0; ty < h; ty += 64)
            for (int tx = 0; tx < w; tx += 64)
            {
                int tw = Math.Min(64, w - tx), th = Math.Min(64, h - ty);
                int sub = _zrle.ReadByte();
                uint[] palette = [];
                if (sub == 0)
                {
                    for (int j = 0; j < th; j++) for (int i = 0; i < tw; i++) Screen[(y + ty + j) * Width + x + tx + i] = ReadPixel(_zrle, cp);
                    continue;
                }
                if (sub is < 1 or > 16) throw new InvalidDataException($"ZRLE subencoding {sub} not expected from this server");
                palette = new uint[sub];
                for (int i = 0; i < sub; i++) palette[i] = ReadPixel(_zrle, cp);
                if (sub == 1)
                {
                    for (int j = 0; j < th; j++) for (int i = 0; i < tw; i++) Screen[(y + ty + j) * Width + x + tx + i] = palette[0];
                    continue;
                }
                int bits = sub == 2 ? 1 : sub <= 4 ? 2 : 4;
                for (int j = 0; j < th; j++)
                {
                    int rowBytes = (tw * bits + 7) / 8;
                    var row = new byte[rowBytes];
                    _zrle.ReadExactly(row);
                    for (int i = 0; i < tw; i++)
                    {
                        int bit = i * bits;
                        int index = (row[bit / 8] >> (8 - bits - bit % 8)) & ((1 << bits) - 1);
                        Screen[(y + ty + j) * Width + x + tx + i] = palette[index];
                    }
                }
            }
    }

    public uint At(int x, int y) => Screen[y * Width + x];

    public void Dispose() { Stream.Dispose(); _zrle?.Dispose(); }

    /// <summary>Bytes appended as rectangles arrive; the inflater reads only what each sync-flushed rectangle holds.</summary>
    private sealed class FeedStream : Stream
    {
        private readonly Queue<byte> _bytes = new();
        public void Add(byte[] b) { foreach (byte x in b) _bytes.Enqueue(x); }
        public override int Read(byte[] buffer, int offset, int count)
        {
            int n = 0;
            while (n < count && _bytes.Count > 0) buffer[offset + n++] = _bytes.Dequeue();
            return n;
        }
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
