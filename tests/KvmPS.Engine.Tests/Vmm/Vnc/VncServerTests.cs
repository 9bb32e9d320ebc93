using System.Net;
using System.Net.Sockets;
using KvmPS.Contract;
using KvmPS.Vmm;
using KvmPS.Vmm.Vnc;

namespace KvmPS.Engine.Tests.Vmm.Vnc;

public sealed class VncServerTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vnc-").FullName;
    private readonly FakeFramebuffer _fb = new(100, 70);
    private readonly RecordingInput _input = new();
    private readonly List<string> _log = [];
    private VncServer? _server;

    public void Dispose()
    {
        _server?.Dispose();
        Directory.Delete(_dir, true);
    }

    private string SocketPath => Path.Combine(_dir, "vnc.sock");

    private VncServer Start(string? password = null, VncServerLimits? limits = null, bool tcp = false)
    {
        string? file = null;
        if (password is not null) { file = Path.Combine(_dir, "pw"); File.WriteAllText(file, password + "\n"); }
        var spec = new VncSpec { UnixPath = SocketPath, Tcp = tcp || password is not null ? "127.0.0.1:0" : null, PasswordFile = file };
        var settings = VncSettings.From(spec, f => $"vnc.{f}");
        _server = VncServer.Start(settings, new Target(_fb, _input), "test-vm", m => { lock (_log) _log.Add(m); }, limits);
        return _server;
    }

    private static uint Pattern(int x, int y) => (uint)(((x * 2) & 0xff) << 16 | ((y * 3) & 0xff) << 8 | ((x + y) & 0xff));

    private static void WaitFor(Func<bool> condition, string what)
    {
        var until = DateTime.UtcNow.AddSeconds(10);
        while (!condition()) { if (DateTime.UtcNow > until) throw new TimeoutException(what); Thread.Sleep(10); }
    }

    /// <summary>The server closed the connection: end of stream, or a reset when it left our bytes unread.</summary>
    private static void AssertClosed(TestViewer v)
    {
        try { Assert.Equal(0, v.Stream.Read(new byte[1])); }
        catch (IOException e) when (e.InnerException is SocketException { SocketErrorCode: SocketError.ConnectionReset }) { }
    }

    [Fact]
    public void UnixSocketIsOwnerOnlyAndHandshakeWithoutAuthGivesTheModeAndName()
    {
        Start();
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(SocketPath) & (UnixFileMode)0x1FF);
        using var v = TestViewer.ConnectUnix(SocketPath).Handshake();
        Assert.Equal((100, 70), (v.Width, v.Height));
        Assert.Equal("test-vm", v.Name);
        Assert.Equal(RfbPixelFormat.Default, v.Format);
        WaitFor(() => _server!.ViewerCount == 1, "viewer counted");
    }

    [Theory]
    [InlineData("RFB 003.003\n")]
    [InlineData("RFB 003.007\n")]
    public void OlderProtocolVersionsGetTheirSecurityHandshake(string version)
    {
        Start();
        using var v = TestViewer.ConnectUnix(SocketPath);
        v.Read(12);
        v.Write(System.Text.Encoding.ASCII.GetBytes(version));
        if (version.EndsWith("3\n")) Assert.Equal(1u, v.U32()); // 3.3: the server names the type
        else { Assert.Equal([1, 1], v.Read(2)); v.Write(1); }
        v.Write(1); // ClientInit, no SecurityResult before it with None
        Assert.Equal(100, v.U16());
    }

    [Fact]
    public void VncAuthenticationAcceptsTheRightPasswordAndRefusesAWrongOne()
    {
        Start(password: "s3cret", limits: new VncServerLimits { AuthFailureDelayMs = 10 });
        Assert.True(_server!.PasswordRequired);
        using (var good = TestViewer.ConnectTcp(_server.TcpEndPoint!).Handshake("s3cret"))
            Assert.Equal(100, good.Width);
        using var bad = TestViewer.ConnectTcp(_server.TcpEndPoint!);
        Assert.Equal([2], bad.Greet());
        bad.Write(2);
        bad.Write(VncAuthentication.Response("wrong", bad.Read(16)));
        Assert.Equal(1u, bad.U32());
        Assert.Contains("authentication failed", System.Text.Encoding.UTF8.GetString(bad.Read((int)bad.U32())));
        AssertClosed(bad);
        // The Unix socket needs no password: its mode is the access check.
        using var local = TestViewer.ConnectUnix(SocketPath).Handshake();
    }

    [Fact]
    public void DesKeyIsThePasswordWithEachByteMirrored()
    {
        // RFC 6143 errata: "password" → key bytes with bits reversed; a known answer from the DES FIPS example key.
        Assert.Equal(new byte[] { 0x0E, 0x86, 0xCE, 0xCE, 0xEE, 0xF6, 0x4E, 0x26 }, VncAuthentication.KeyOf("password"));
        Assert.Equal(new byte[] { 0x8C, 0x4C, 0, 0, 0, 0, 0, 0 }, VncAuthentication.KeyOf("12"));
        var challenge = new byte[16];
        Assert.NotEqual(VncAuthentication.Response("a", challenge), VncAuthentication.Response("b", challenge));
        Assert.Equal(VncAuthentication.Response("abcdefgh", challenge), VncAuthentication.Response("abcdefghXYZ", challenge)); // 8 characters count
    }

    [Fact]
    public void RawFullUpdateShowsThePixels()
    {
        _fb.Fill(Pattern);
        Start();
        using var v = TestViewer.ConnectUnix(SocketPath).Handshake();
        v.Request(incremental: false);
        v.ReadUpdate();
        for (int y = 0; y < 70; y += 7) for (int x = 0; x < 100; x += 9) Assert.Equal(Pattern(x, y), v.At(x, y));
    }

    [Theory]
    [InlineData(16, 16, true, 31, 63, 31, 11, 5, 0)]   // RGB565 big-endian
    [InlineData(16, 15, false, 31, 31, 31, 10, 5, 0)]  // RGB555 little-endian
    [InlineData(8, 8, false, 7, 7, 3, 0, 3, 6)]        // BGR233
    [InlineData(32, 24, true, 255, 255, 255, 0, 8, 16)] // 0x00BBGGRR big-endian
    public void TrueColourFormatsAreHonoured(int bpp, int depth, bool bigEndian, int rMax, int gMax, int bMax, int rShift, int gShift, int bShift)
    {
        _fb.Fill(Pattern);
        Start();
        var format = new RfbPixelFormat((byte)bpp, (byte)depth, bigEndian, true, (ushort)rMax, (ushort)gMax, (ushort)bMax, (byte)rShift, (byte)gShift, (byte)bShift);
        foreach (int encoding in new[] { 0, 16 })
        {
            using var v = TestViewer.ConnectUnix(SocketPath).Handshake();
            v.SetPixelFormat(format);
            v.SetEncodings(encoding);
            v.Request(incremental: false);
            v.ReadUpdate();
            for (int y = 0; y < 70; y += 5)
                for (int x = 0; x < 100; x += 3)
                {
                    uint rgb = Pattern(x, y);
                    uint r = (rgb >> 16) & 0xff, g = (rgb >> 8) & 0xff, b = rgb & 0xff;
                    uint expected = ((r * (uint)rMax + 127) / 255 << rShift) | ((g * (uint)gMax + 127) / 255 << gShift) | ((b * (uint)bMax + 127) / 255 << bShift);
                    if (encoding == 16 && bpp == 32 && bigEndian) expected >>= 0; // CPIXEL: low three bytes (decoded little-endian below)
                    uint got = v.At(x, y);
                    if (encoding == 16 && bpp == 32) got = bigEndian ? (got >> 16 & 0xff) | (got & 0xff00) | ((got & 0xff) << 16) : got;
                    Assert.Equal(expected, got);
                }
        }
    }

    [Fact]
    public void ColourMapFormatClosesThatConnectionOnly()
    {
        Start();
        using var other = TestViewer.ConnectUnix(SocketPath).Handshake();
        using var v = TestViewer.ConnectUnix(SocketPath).Handshake();
        v.SetPixelFormat(new RfbPixelFormat(8, 8, false, false, 0, 0, 0, 0, 0, 0));
        AssertClosed(v);
        other.Request(false);
        Assert.Equal(70, other.ReadUpdate().Sum(r => r.H)); // whole screen, in bands of 64 rows
    }

    [Fact]
    public void ZrleDecodesToThePatternAcrossSeveralUpdatesOnOneZlibStream()
    {
        var fb = _fb;
        fb.SetMode(150, 130); // tiles of 64 with partial ones at the edges
        fb.Fill((x, y) => x < 70 ? 0x00FF0000u : (x < 100 ? ((x / 4 + y / 4) % 2 == 0 ? 0x0000FF00u : 0x000000FFu) : Pattern(x, y)));
        Start();
        using var v = TestViewer.ConnectUnix(SocketPath).Handshake();
        v.SetEncodings(16, 0);
        v.Request(false);
        Assert.All(v.ReadUpdate(), r => Assert.Equal(16, r.Encoding));
        var expect = new uint[150 * 130];
        fb.CopyPixels(fb.Mode, 0, 0, 150, 130, expect);
        Assert.Equal(expect, v.Screen);
        fb.Set(120, 77, 0x00123456);
        v.Request(true);
        var rects = v.ReadUpdate();
        Assert.Equal([(112, 77, 16, 1, 16)], rects); // the 16-pixel block that changed
        Assert.Equal(0x00123456u, v.At(120, 77));
    }

    [Fact]
    public void IncrementalUpdatesFollowEachViewersOwnGeneration()
    {
        _fb.Fill(Pattern);
        Start();
        using var a = TestViewer.ConnectUnix(SocketPath).Handshake();
        using var b = TestViewer.ConnectUnix(SocketPath).Handshake();
        a.Request(false); a.ReadUpdate();
        b.Request(false); b.ReadUpdate();
        _fb.Set(5, 10, 0x00ABCDEF);
        a.Request(true);
        Assert.Equal([(0, 10, 16, 1, 0)], a.ReadUpdate()); // a takes the change...
        _fb.Set(6, 40, 0x00FEDCBA);
        _fb.Set(6, 41, 0x00FEDCBA);
        b.Request(true);
        Assert.Equal([(0, 10, 16, 1, 0), (0, 40, 16, 2, 0)], b.ReadUpdate()); // ...and b still gets it with its own
        Assert.Equal(0x00ABCDEFu, b.At(5, 10));
        a.Request(true);
        Assert.Equal([(0, 40, 16, 2, 0)], a.ReadUpdate());
        // Nothing changed: the request waits (no empty update), and is answered by the next change.
        a.Request(true, 0, 0, 50, 50);
        a.Socket.ReceiveTimeout = 300;
        Assert.ThrowsAny<IOException>(() => a.Read(1));
        a.Socket.ReceiveTimeout = 10_000;
        _fb.Set(70, 20, 1); // outside the requested columns: not sent, the request keeps waiting
        _fb.Set(30, 20, 1); // inside: its block, clipped to the request
        Assert.Equal([(16, 20, 16, 1, 0)], a.ReadUpdate());
        a.Request(true, 0, 0, 50, 50);
        _fb.Set(49, 21, 2);
        Assert.Equal([(48, 21, 2, 1, 0)], a.ReadUpdate()); // the last block ends at the request's edge (50)
    }

    [Fact]
    public void ModeChangeSendsDesktopSizeThenTheWholeScreen()
    {
        _fb.Fill(Pattern);
        Start();
        using var v = TestViewer.ConnectUnix(SocketPath).Handshake();
        v.SetEncodings(0, -223);
        v.Request(false); v.ReadUpdate();
        _fb.SetMode(64, 32);
        _fb.Fill((x, y) => 0x00FFFFFF);
        v.Request(true);
        var rects = v.ReadUpdate();
        Assert.Equal((0, 0, 64, 32, -223), rects[0]);
        Assert.Equal(32, rects.Skip(1).Sum(r => r.H));
        Assert.All(v.Screen, p => Assert.Equal(0x00FFFFFFu, p));
    }

    [Fact]
    public void BlankDisplayIsASmallBlackDesktop()
    {
        _fb.SetMode(0, 0);
        Start();
        using var v = TestViewer.ConnectUnix(SocketPath).Handshake();
        Assert.Equal((VncServer.BlankWidth, VncServer.BlankHeight), (v.Width, v.Height));
        v.Request(false);
        v.ReadUpdate();
        Assert.All(v.Screen, p => Assert.Equal(0u, p));
    }

    [Fact]
    public void KeyAndPointerEventsReachTheInput()
    {
        Start();
        using var v = TestViewer.ConnectUnix(SocketPath).Handshake();
        v.Write(4, 1, 0, 0, 0, 0, 0xff, 0x0d); // Return down
        v.Write(5, 0x01, 0, 10, 0, 20);          // left button at (10, 20)
        v.Write(6, 0, 0, 0, 0, 0, 0, 3, (byte)'a', (byte)'b', (byte)'c'); // cut text: read and dropped
        v.Write(4, 0, 0, 0, 0, 0, 0xff, 0x0d);
        WaitFor(() => { lock (_input.Keys) return _input.Keys.Count == 2; }, "keys");
        Assert.Equal([(0xff0du, true), (0xff0du, false)], _input.Keys);
        Assert.Equal([(10, 20, (byte)1)], _input.Pointer);
    }

    [Theory]
    [InlineData(new byte[] { 0x47, 0x45, 0x54, 0x20, 0x2F, 0x20, 0x48, 0x54, 0x54, 0x50, 0x2F, 0x31 })] // "GET / HTTP/1"
    [InlineData(new byte[] { 0x52, 0x46, 0x42, 0x20, 0x30, 0x30, 0x34, 0x2E, 0x30, 0x30, 0x30, 0x0A })] // RFB 004.000
    public void WrongVersionStringsCloseTheConnection(byte[] version)
    {
        Start();
        using var v = TestViewer.ConnectUnix(SocketPath);
        v.Read(12);
        v.Write(version);
        AssertClosed(v);
        using var ok = TestViewer.ConnectUnix(SocketPath).Handshake();
    }

    [Theory]
    [InlineData(new byte[] { 2, 0, 0xFF, 0xFF })]                      // SetEncodings with 65535 entries
    [InlineData(new byte[] { 6, 0, 0, 0, 0x7F, 0xFF, 0xFF, 0xFF })]    // ClientCutText of 2 GiB
    [InlineData(new byte[] { 6, 0, 0, 0, 0x00, 0x10, 0x00, 0x01 })]    // ClientCutText one byte over 1 MiB
    [InlineData(new byte[] { 99, 1, 2, 3 })]                           // unknown message
    public void OversizedOrUnknownMessagesCloseThatConnectionOnly(byte[] message)
    {
        Start();
        using var other = TestViewer.ConnectUnix(SocketPath).Handshake();
        using var v = TestViewer.ConnectUnix(SocketPath).Handshake();
        v.Write(message);
        AssertClosed(v);
        WaitFor(() => _server!.ViewerCount == 1, "hostile viewer dropped");
        other.Request(false);
        Assert.Equal(70, other.ReadUpdate().Sum(r => r.H)); // whole screen, in bands of 64 rows
    }

    [Fact]
    public void AViewerThatNeverReadsIsDroppedAndOthersKeepWorking()
    {
        _fb.SetMode(1024, 768);
        _fb.Fill(Pattern);
        Start(limits: new VncServerLimits { SendTimeoutMs = 500 });
        var stuck = TestViewer.ConnectUnix(SocketPath).Handshake();
        stuck.Socket.ReceiveBufferSize = 4096;
        for (int i = 0; i < 4; i++) stuck.Request(false); // 3 MiB each, never read
        using var good = TestViewer.ConnectUnix(SocketPath).Handshake();
        good.Request(false);
        good.ReadUpdate();
        WaitFor(() => _server!.ViewerCount == 1, "the stuck viewer dropped");
        _fb.Set(1, 1, 7);
        good.Request(true);
        Assert.Equal([(0, 1, 16, 1, 0)], good.ReadUpdate());
        stuck.Dispose();
    }

    [Fact]
    public void AViewerLeavingMidUpdateIsFine()
    {
        _fb.SetMode(800, 600);
        _fb.Fill(Pattern);
        Start();
        for (int i = 0; i < 3; i++)
        {
            var v = TestViewer.ConnectUnix(SocketPath).Handshake();
            v.Request(false);
            v.Read(100);
            v.Socket.LingerState = new LingerOption(true, 0); // reset, not a polite close
            v.Dispose();
        }
        WaitFor(() => _server!.ViewerCount == 0, "viewers gone");
        using var ok = TestViewer.ConnectUnix(SocketPath).Handshake();
        ok.Request(false);
        ok.ReadUpdate();
    }

    [Fact]
    public void ViewersBeyondTheLimitAreToldWhy()
    {
        Start(limits: new VncServerLimits { MaxViewers = 2 });
        using var a = TestViewer.ConnectUnix(SocketPath).Handshake();
        using var b = TestViewer.ConnectUnix(SocketPath).Handshake();
        WaitFor(() => _server!.ViewerCount == 2, "two viewers");
        using var c = TestViewer.ConnectUnix(SocketPath);
        Assert.Empty(c.Greet()); // no security types: a reason follows
        Assert.Contains("at most 2 VNC viewers", System.Text.Encoding.UTF8.GetString(c.Read((int)c.U32())));
    }

    [Fact]
    public void IdleViewersDoNotPollTheFramebuffer()
    {
        Start();
        using var v = TestViewer.ConnectUnix(SocketPath).Handshake();
        v.Request(false); v.ReadUpdate();
        int before = _fb.Refreshes;
        Thread.Sleep(500);
        Assert.Equal(before, _fb.Refreshes); // no request pending: no polling
        v.Request(true);
        Thread.Sleep(500);
        Assert.InRange(_fb.Refreshes - before, 2, 8); // 33, 66, 132, 264 ms...: backing off from 30 Hz while nothing changes
    }

    [Fact]
    public void AnIdleViewersPollBacksOffAndAChangeStillComesWithinTheLongestInterval()
    {
        _fb.Fill(Pattern);
        Start(limits: new VncServerLimits { PollIntervalMs = 20, PollIdleMaxIntervalMs = 400 });
        using var v = TestViewer.ConnectUnix(SocketPath).Handshake();
        v.Request(false); v.ReadUpdate();
        v.Request(true);
        Thread.Sleep(1_000); // 20, 40, 80, 160, 320 → 400 ms
        int before = _fb.Refreshes;
        Thread.Sleep(1_000);
        Assert.InRange(_fb.Refreshes - before, 1, 4); // at 20 ms it would be 50
        var watch = System.Diagnostics.Stopwatch.StartNew();
        _fb.Set(50, 50, 0x00010203);
        Assert.Equal([(48, 50, 16, 1, 0)], v.ReadUpdate());
        Assert.True(watch.ElapsedMilliseconds < 400 + 300, $"the change took {watch.ElapsedMilliseconds} ms");
        Assert.Equal(0x00010203u, v.At(50, 50));
        // Back to the short interval after a change, and after input (the screen likely changes next).
        v.Request(true);
        Thread.Sleep(1_000);
        before = _fb.Refreshes;
        watch.Restart();
        v.Write(4, 1, 0, 0, 0, 0, 0, 0x61); // KeyEvent 'a' down
        WaitFor(() => _fb.Refreshes - before >= 3, "polls after a key");
        // Still backed off, 3 looks would take 800 ms or more; after the key: 20 + 40 + 80 ms.
        Assert.True(watch.ElapsedMilliseconds < 600, $"3 looks took {watch.ElapsedMilliseconds} ms after a key");
        Assert.Single(_input.Keys);
    }

    [Fact]
    public void AWrittenButUnchangedRowSendsNothing()
    {
        _fb.SetMode(1024, 16);
        _fb.Fill(Pattern);
        Start(limits: new VncServerLimits { PollIntervalMs = 10, PollIdleMaxIntervalMs = 20 });
        using var v = TestViewer.ConnectUnix(SocketPath).Handshake();
        v.Request(false); v.ReadUpdate();
        v.Request(true);
        int before = _fb.Refreshes;
        _fb.Set(3, 3, Pattern(3, 3)); // the row is written (dirty) with the value it had
        _fb.Fill(Pattern);            // every row written, nothing different
        WaitFor(() => _fb.Refreshes - before >= 5, "the viewer looked at the written rows");
        v.Socket.ReceiveTimeout = 200;
        Assert.ThrowsAny<IOException>(() => v.Read(1)); // no update
        v.Socket.ReceiveTimeout = 10_000;
        _fb.Set(1000, 7, 0x00FFFFFF);
        Assert.Equal([(992, 7, 16, 1, 0)], v.ReadUpdate());
        Assert.Equal(0x00FFFFFFu, v.At(1000, 7));
    }

    [Fact]
    public void AMovingBoxInWideRowsSendsOnlyItsEdges()
    {
        _fb.SetMode(1024, 200);
        _fb.Fill((x, y) => 0x00202020);
        Start();
        using var v = TestViewer.ConnectUnix(SocketPath).Handshake();
        v.SetEncodings(16);
        v.Request(false); v.ReadUpdate();
        _fb.Fill((x, y) => x >= 400 && x < 528 && y >= 20 && y < 148 ? 0x00FF8000u : 0x00202020u); // a 128x128 box
        v.Request(true);
        var first = v.ReadUpdate();
        Assert.Equal([(400, 20, 128, 64, 16), (400, 84, 128, 64, 16)], first);
        _fb.Fill((x, y) => x >= 408 && x < 536 && y >= 20 && y < 148 ? 0x00FF8000u : 0x00202020u); // moved 8 pixels right
        v.Request(true);
        var moved = v.ReadUpdate();
        // Every row was written (the fake dirties all of them), 128 rows differ: the block it left and the one it entered.
        Assert.Equal([(400, 20, 16, 64, 16), (528, 20, 16, 64, 16), (400, 84, 16, 64, 16), (528, 84, 16, 64, 16)], moved);
        var expect = new uint[1024 * 200];
        _fb.CopyPixels(_fb.Mode, 0, 0, 1024, 200, expect);
        Assert.Equal(expect, v.Screen);
    }

    [Fact]
    public void SettingsRefuseAnOpenTcpListenerWithoutPasswordAndBadPasswordFiles()
    {
        var e = Assert.Throws<VmmConfigException>(() => VncSettings.From(new VncSpec { Tcp = "0.0.0.0:5901" }, f => $"vnc.{f}"));
        Assert.Contains("vnc.tcp", e.Message);
        Assert.Contains("password_file", e.Message);
        VncSettings.From(new VncSpec { Tcp = "127.0.0.1:5901" }, f => f);
        VncSettings.From(new VncSpec { Tcp = "[::1]:5901" }, f => f);
        string empty = Path.Combine(_dir, "empty");
        File.WriteAllText(empty, "\n");
        e = Assert.Throws<VmmConfigException>(() => VncSettings.From(new VncSpec { UnixPath = "x", PasswordFile = empty }, f => $"vnc.{f}"));
        Assert.Contains("vnc.password_file", e.Message);
        Assert.Contains(empty, e.Message);
        e = Assert.Throws<VmmConfigException>(() => VncSettings.From(new VncSpec { UnixPath = "x", PasswordFile = Path.Combine(_dir, "missing") }, f => $"vnc.{f}"));
        Assert.Contains("missing", e.Message);
        Assert.Throws<VmmConfigException>(() => VncSettings.From(new VncSpec(), f => f));
        Assert.Throws<VmmConfigException>(() => VncSettings.From(new VncSpec { Tcp = "nonsense" }, f => f));
    }

    [Fact]
    public void DisplayFlagAndConfigNeedADisplayDevice()
    {
        var e = Assert.Throws<VmmConfigException>(() => VmmConfig.FromArgs(["--display", "vnc,unix=/tmp/x.sock"]));
        Assert.Contains("--display", e.Message);
        Assert.Contains("display", e.Message);
        e = Assert.Throws<VmmConfigException>(() => VmmConfig.FromArgs(["--display", "spice"]));
        Assert.Contains("spice", e.Message);
        e = Assert.Throws<VmmConfigException>(() => VmmConfig.FromArgs(["--display", "vnc,unix=/x,color=1"]));
        Assert.Contains("color", e.Message);
        var spec = VncSettings.ParseDisplayFlag("vnc,unix=/tmp/a.sock,tcp=127.0.0.1:5900,password_file=/p", "--display");
        Assert.Equal(new VncSpec { UnixPath = "/tmp/a.sock", Tcp = "127.0.0.1:5900", PasswordFile = "/p" }, spec);
    }
}
