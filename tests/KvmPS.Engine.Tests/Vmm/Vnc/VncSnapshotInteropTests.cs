using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using KvmPS.Contract;
using KvmPS.Vmm.Vnc;
using StbImageSharp;

namespace KvmPS.Engine.Tests.Vmm.Vnc;

/// <summary>
/// Debian's vncsnapshot (TightVNC 1.2.8, RFB 3.3) against the server over TCP loopback: its JPEG must show the test
/// pattern of the in-memory display. Without the tool installed the tests fail, naming it (build.sh installs it).
/// </summary>
public sealed class VncSnapshotInteropTests : IDisposable
{
    private const string Tool = "/usr/bin/vncsnapshot";
    private readonly string _dir = Directory.CreateTempSubdirectory("vncsnap-").FullName;
    private readonly FakeFramebuffer _fb = new(320, 240);
    private VncServer? _server;

    public void Dispose()
    {
        _server?.Dispose();
        Directory.Delete(_dir, true);
    }

    // Quadrants: red, green / blue, white; a black bar across the middle rows.
    private static uint Pattern(int x, int y) =>
        y is >= 116 and < 124 ? 0u : (x < 160, y < 120) switch
        {
            (true, true) => 0x00FF0000,
            (false, true) => 0x0000FF00,
            (true, false) => 0x000000FF,
            _ => 0x00FFFFFF,
        };

    /// <summary>A TCP display number (port 5900 + N) free on loopback now.</summary>
    private static int FreeDisplay()
    {
        for (int n = 50 + Random.Shared.Next(40); ; n++)
        {
            try
            {
                using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                probe.Bind(new IPEndPoint(IPAddress.Loopback, 5900 + n));
                return n;
            }
            catch (SocketException) when (n < 200) { }
        }
    }

    private (int Code, string Output) Snapshot(int display, string jpeg, params string[] extra)
    {
        Assert.True(File.Exists(Tool), $"{Tool} is not installed (Debian package vncsnapshot; build.sh sets it up)");
        var psi = new ProcessStartInfo(Tool) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in extra) psi.ArgumentList.Add(a);
        psi.ArgumentList.Add("-allowblank");
        psi.ArgumentList.Add($"127.0.0.1:{display}");
        psi.ArgumentList.Add(jpeg);
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        if (!p.WaitForExit(30_000)) { p.Kill(); throw new TimeoutException("vncsnapshot did not finish in 30 s"); }
        return (p.ExitCode, stdout + stderr.Result);
    }

    private void AssertPictureShowsThePattern(string jpeg)
    {
        using var file = File.OpenRead(jpeg);
        var image = ImageResult.FromStream(file, ColorComponents.RedGreenBlue);
        Assert.Equal((320, 240), (image.Width, image.Height));
        foreach (var (x, y) in new[] { (40, 40), (280, 40), (40, 200), (280, 200), (160, 120), (100, 100), (300, 150) })
        {
            int i = (y * image.Width + x) * 3;
            uint expected = Pattern(x, y);
            int[] want = [(int)(expected >> 16) & 0xff, (int)(expected >> 8) & 0xff, (int)expected & 0xff];
            for (int c = 0; c < 3; c++)
                Assert.True(Math.Abs(image.Data[i + c] - want[c]) <= 40, $"pixel ({x},{y}) channel {c}: {image.Data[i + c]} in the JPEG, {want[c]} on the display");
        }
    }

    [Fact]
    public void VncsnapshotWithoutPasswordOnLoopbackSeesTheTestPattern()
    {
        _fb.Fill(Pattern);
        int display = FreeDisplay();
        var settings = VncSettings.From(new VncSpec { Tcp = $"127.0.0.1:{5900 + display}" }, f => f);
        _server = VncServer.Start(settings, new Target(_fb, null), "snapshot-test", _ => { });
        string jpeg = Path.Combine(_dir, "shot.jpg");
        var (code, output) = Snapshot(display, jpeg);
        Assert.True(code == 0, $"vncsnapshot exited {code}: {output}");
        AssertPictureShowsThePattern(jpeg);
    }

    [Fact]
    public void VncsnapshotWithAPasswordFileAuthenticatesAndAWrongOneIsRefused()
    {
        _fb.Fill(Pattern);
        int display = FreeDisplay();
        string serverPassword = Path.Combine(_dir, "server-pw");
        File.WriteAllText(serverPassword, "kvmps-pw\n");
        var settings = VncSettings.From(new VncSpec { Tcp = $"127.0.0.1:{5900 + display}", PasswordFile = serverPassword }, f => f);
        _server = VncServer.Start(settings, new Target(_fb, null), "snapshot-test", _ => { }, new VncServerLimits { AuthFailureDelayMs = 10 });

        string jpeg = Path.Combine(_dir, "shot.jpg");
        var (code, output) = Snapshot(display, jpeg, "-passwd", ViewerPasswordFile("kvmps-pw"));
        Assert.True(code == 0, $"vncsnapshot exited {code}: {output}");
        AssertPictureShowsThePattern(jpeg);

        string wrongJpeg = Path.Combine(_dir, "wrong.jpg");
        (code, output) = Snapshot(display, wrongJpeg, "-passwd", ViewerPasswordFile("guess"));
        Assert.NotEqual(0, code);
        Assert.False(File.Exists(wrongJpeg));
    }

    /// <summary>
    /// A vncpasswd file: the password (8 bytes, zero-padded) DES-encrypted with VNC's fixed obfuscation key, which
    /// VNC's DES takes bit-reversed like any VNC key.
    /// </summary>
    private string ViewerPasswordFile(string password)
    {
        byte[] fixedKey = [23, 82, 107, 6, 35, 78, 88, 7];
        using var des = DES.Create();
        des.Key = VncAuthentication.KeyOf(new string(fixedKey.Select(b => (char)b).ToArray()));
        var plain = new byte[8];
        for (int i = 0; i < Math.Min(8, password.Length); i++) plain[i] = (byte)password[i];
        string path = Path.Combine(_dir, "viewer-" + password);
        File.WriteAllBytes(path, des.EncryptEcb(plain, PaddingMode.None));
        return path;
    }
}
