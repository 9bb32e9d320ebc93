using KvmPS.Management.Display;

namespace KvmPS.Management.Lifecycle;

public sealed partial class VmManager
{
    /// <summary>How long a screenshot may take: connecting, the handshake and one full Raw picture.</summary>
    public static readonly TimeSpan DefaultScreenshotTimeout = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Takes one picture of the VM's screen through its VNC server (the Unix socket in its folder) and, with
    /// <paramref name="pngPath"/>, saves it as PNG. A VM without a display, or one that is not running, is refused
    /// (<see cref="VmStateException"/>); a server that does not answer in time is <see cref="RfbException"/> naming the VM and socket.
    /// </summary>
    public VmScreenshot Screenshot(string name, string? pngPath, TimeSpan? timeout = null)
    {
        var definition = Store.Get(name);
        if (definition.Display is not { } display)
            throw new VmStateException(name, Probe(name).State,
                $"VM '{name}' has no display (Display = @{{ Vnc = 'unix' }} in its definition, or New-KvmVm -DvdPath / Set-KvmVm gives one; it takes effect at the next start)");
        var snapshot = Probe(name);
        if (snapshot is not { Active: true, State: VmState.Running or VmState.Paused })
            throw new VmStateException(name, snapshot.State, $"VM '{name}' is {Describe(snapshot.State)}; a screenshot needs it running");
        var endpoints = GetVncEndpoints(name)!;
        var password = display.PasswordFile is { } file ? ReadVncPassword(name, file) : null;
        try
        {
            using var client = RfbClient.Connect(endpoints.UnixPath, null, password, timeout ?? DefaultScreenshotTimeout);
            var frame = client.CaptureFrame();
            if (pngPath is not null)
                ScreenshotWriter.Save(frame, pngPath);
            return new VmScreenshot(name, pngPath is null ? null : Path.GetFullPath(pngPath), frame.Width, frame.Height, "unix:" + endpoints.UnixPath) { Frame = frame };
        }
        catch (RfbException e)
        {
            throw e.ForVm(name);
        }
    }

    /// <summary>The first line of the password file (VNC uses at most 8 characters).</summary>
    internal static string ReadVncPassword(string vmName, string file)
    {
        try
        {
            using var reader = new StreamReader(file);
            return reader.ReadLine() ?? "";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ManagementValidationException(vmName, "Display.PasswordFile", $"'{file}' cannot be read ({e.Message})");
        }
    }
}

/// <summary>A screenshot taken by <see cref="VmManager.Screenshot"/>.</summary>
public sealed record VmScreenshot(string VmName, string? Path, int Width, int Height, string Endpoint)
{
    /// <summary>The pixels (not shown in views).</summary>
    public RfbFrame? Frame { get; init; }
}
