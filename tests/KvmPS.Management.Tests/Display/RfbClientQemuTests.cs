using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using BigGustave;
using KvmPS.Management.Display;
using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Management.Tests.Display;

/// <summary>Runs only where QEMU is installed: its VNC server is the third-party peer of our RFB client.</summary>
public sealed class QemuVncFactAttribute : FactAttribute
{
    public const string Qemu = "/usr/bin/qemu-system-x86_64";

    public QemuVncFactAttribute()
    {
        if (!File.Exists(Qemu))
            Skip = $"{Qemu} is missing (apt-get install -y qemu-system-x86)";
    }
}

/// <summary>The screenshot client against QEMU's own VNC server (RFB 3.8), and against servers that misbehave.</summary>
public sealed class RfbClientQemuTests
{
    /// <summary>QEMU without a machine: its VNC server shows a 640x480 text console ("Guest has not initialized the display").</summary>
    private static Process StartQemu(string vncOption, params string[] extra)
    {
        var psi = new ProcessStartInfo(QemuVncFactAttribute.Qemu) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (var a in new[] { "-machine", "none", "-nodefaults", "-display", "none" }.Concat(extra).Concat(["-vnc", vncOption]))
            psi.ArgumentList.Add(a);
        return Process.Start(psi)!;
    }

    private static void WaitFor(Func<bool> ready)
    {
        var until = DateTime.UtcNow.AddSeconds(20);
        while (!ready())
        {
            Assert.True(DateTime.UtcNow < until, "QEMU's VNC server did not come up within 20 s");
            Thread.Sleep(50);
        }
    }

    /// <summary>Whether the server at <paramref name="endpoint"/> takes a connection now.</summary>
    private static bool Accepts(EndPoint endpoint)
    {
        try
        {
            using var s = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Unspecified);
            s.Connect(endpoint);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    private static void Stop(Process qemu)
    {
        try { qemu.Kill(); } catch (InvalidOperationException) { }
        qemu.WaitForExit(5000);
        qemu.Dispose();
    }

    [QemuVncFact]
    public void Captures_QEMUs_screen_over_a_unix_socket_and_writes_a_PNG_that_decodes()
    {
        using var dir = new TempDirectory();
        var socket = Path.Combine(dir.Path, "vnc.sock");
        var qemu = StartQemu("unix:" + socket);
        try
        {
            // The file appears at bind(), a moment before QEMU listens: wait for a connection to be taken (seen refused once in CI).
            WaitFor(() => File.Exists(socket) && Accepts(new UnixDomainSocketEndPoint(socket)));
            using var client = RfbClient.Connect(socket, null, null, TimeSpan.FromSeconds(10));
            Assert.Equal((640, 480), (client.Width, client.Height));
            Assert.Equal("QEMU", client.DesktopName);
            var frame = client.CaptureFrame();
            Assert.Equal((640, 480, 640 * 480 * 4), (frame.Width, frame.Height, frame.Bgrx.Length));
            // The console's text is drawn light on black: some pixels lit, most dark.
            int lit = 0;
            for (int y = 0; y < frame.Height; y++)
                for (int x = 0; x < frame.Width; x++)
                    if (frame.Rgb(x, y) != 0) lit++;
            Assert.InRange(lit, 100, frame.Width * frame.Height / 4);

            var png = Path.Combine(dir.Path, "screen.png");
            ScreenshotWriter.Save(frame, png);
            var decoded = Png.Open(File.ReadAllBytes(png));
            Assert.Equal((640, 480), (decoded.Width, decoded.Height));
            for (int y = 0; y < frame.Height; y += 7)
                for (int x = 0; x < frame.Width; x += 3)
                {
                    var p = decoded.GetPixel(x, y);
                    Assert.Equal(frame.Rgb(x, y), (p.R << 16) | (p.G << 8) | p.B);
                }
        }
        finally
        {
            Stop(qemu);
        }
    }

    [QemuVncFact]
    public void Answers_VNC_authentication_with_the_password_and_reports_a_wrong_one()
    {
        int port = 5900 + 40 + Random.Shared.Next(0, 50);
        var qemu = StartQemu($"127.0.0.1:{port - 5900},password-secret=vncpw", "-object", "secret,id=vncpw,data=s3cret!x");
        try
        {
            WaitFor(() => Accepts(new IPEndPoint(IPAddress.Loopback, port)));
            using (var client = RfbClient.Connect(null, $"127.0.0.1:{port}", "s3cret!x", TimeSpan.FromSeconds(10)))
                Assert.Equal(640, client.CaptureFrame().Width);
            var wrong = Assert.Throws<RfbException>(() => RfbClient.Connect(null, $"127.0.0.1:{port}", "wrong", TimeSpan.FromSeconds(10)));
            Assert.Contains("refused the password", wrong.Message);
            Assert.Contains($"tcp:127.0.0.1:{port}", wrong.Message);
            var none = Assert.Throws<RfbException>(() => RfbClient.Connect(null, $"127.0.0.1:{port}", null, TimeSpan.FromSeconds(10)));
            Assert.Contains("asks for a VNC password", none.Message);
        }
        finally
        {
            Stop(qemu);
        }
    }

    [Fact]
    public void A_server_that_is_not_VNC_or_says_nothing_is_a_typed_error_naming_the_socket()
    {
        using var dir = new TempDirectory();
        var path = Path.Combine(dir.Path, "fake.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen();
        var server = Task.Run(() =>
        {
            using var a = listener.Accept();
            a.Send("SSH-2.0-OpenSSH\r\n"u8.ToArray());
            using var b = listener.Accept(); // the second one is silent
            Thread.Sleep(1500);
        });
        var garbage = Assert.Throws<RfbException>(() => RfbClient.Connect(path, null, null, TimeSpan.FromSeconds(5)));
        Assert.Contains("is not an RFB (VNC) server", garbage.Message);
        Assert.Contains("unix:" + path, garbage.Message);
        var silent = Assert.Throws<RfbException>(() => RfbClient.Connect(path, null, null, TimeSpan.FromMilliseconds(400)));
        Assert.Contains("in time", silent.Message);
        server.Wait(5000);

        var missing = Assert.Throws<RfbException>(() => RfbClient.Connect(Path.Combine(dir.Path, "none.sock"), null, null, TimeSpan.FromSeconds(1)));
        Assert.Contains("cannot connect", missing.Message);
    }

    [Fact]
    public void VNC_authentication_encrypts_the_challenge_with_the_bit_reversed_password()
    {
        // Reference: openssl enc -des-ecb -K 8c4ccc2cac6cec1c (the bytes of "12345678", each reversed) on 00 01 .. 0f.
        var challenge = Enumerable.Range(0, 16).Select(i => (byte)i).ToArray();
        Assert.Equal(Convert.FromHexString("83dd2b4dbd04367f28578fdd5b142740"), RfbClient.VncAuthResponse("12345678", challenge));
        // Only the first 8 characters count.
        Assert.Equal(RfbClient.VncAuthResponse("12345678", challenge), RfbClient.VncAuthResponse("123456789abc", challenge));
        // An empty password makes a DES weak key (all zeros), which .NET refuses: a typed error, not a crash.
        var weak = Assert.Throws<ArgumentException>(() => RfbClient.VncAuthResponse("", challenge));
        Assert.Contains("weak", weak.Message);
    }
}
