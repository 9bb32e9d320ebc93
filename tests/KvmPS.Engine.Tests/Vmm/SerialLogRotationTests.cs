using System.Text;
using KvmPS.Devices;
using KvmPS.Devices.Legacy;
using KvmPS.Vmm;

namespace KvmPS.Engine.Tests.Vmm;

/// <summary>
/// The serial log is bounded (issue 17: 15 MB in 2.5 min from a guest printing in a loop): it rotates at its size
/// limit and keeps a fixed number of files, as libvirt's virtlogd does.
/// </summary>
public sealed class SerialLogRotationTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kvmps-serial-").FullName;
    private string LogPath => Path.Combine(_dir, "serial.log");

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    private sealed class Line : IInterruptLine
    {
        public void Trigger() { }
        public void SetLevel(bool asserted) { }
    }

    [Fact]
    public void TwoWritersOnOneConsoleFileAppendAfterEachOtherInsteadOfOverwriting()
    {
        // A live upgrade: the receiving VMM opens the console file while the running one still writes to it, and writes
        // only after it took the VM over. Nothing the first one wrote meanwhile may be overwritten.
        using var running = new RotatingLogFile(LogPath, 0);
        running.Write("count 1\n"u8);
        using var receiving = new RotatingLogFile(LogPath, 0);
        running.Write("count 2\n"u8);
        receiving.Write("count 3\n"u8);
        running.Write("count 4\n"u8);
        Assert.Equal("count 1\ncount 2\ncount 3\ncount 4\n", File.ReadAllText(LogPath));
    }

    [Fact]
    public void AGuestPrintingWithoutEndThroughTheUartFillsAtMostTheKeptFiles()
    {
        const long limit = 64 * 1024;
        var written = new MemoryStream();
        using (var log = new RotatingLogFile(LogPath, limit, keptFiles: 2))
        {
            var uart = new Serial16550(new Line(), data => { written.Write(data); log.Write(data); });
            // 1 MiB of numbered lines, one byte per THR write as a guest driver does.
            for (int i = 0; written.Length < (1 << 20); i++)
                foreach (byte b in Encoding.ASCII.GetBytes($"line {i:D7} from a guest that never stops printing\n"))
                    uart.Write(0, [b]);
            Assert.True(log.Rotations >= 14, $"{log.Rotations} rotations");
        }

        Assert.True(File.Exists(LogPath));
        Assert.True(File.Exists(LogPath + ".1"));
        Assert.True(File.Exists(LogPath + ".2"));
        Assert.False(File.Exists(LogPath + ".3"));
        Assert.Equal(1, Directory.GetFiles(_dir).Count(f => f.EndsWith(".log", StringComparison.Ordinal)));
        var files = new[] { LogPath + ".2", LogPath + ".1", LogPath };
        foreach (var f in files) Assert.InRange(new FileInfo(f).Length, 1, limit);
        Assert.Equal(limit, new FileInfo(LogPath + ".1").Length);

        // Oldest to newest, the kept files are exactly the end of what the guest wrote: nothing lost in between.
        var kept = files.SelectMany(File.ReadAllBytes).ToArray();
        var all = written.ToArray();
        Assert.Equal(all.AsSpan(all.Length - kept.Length).ToArray(), kept);
    }

    [Fact]
    public void APlantedSerialLogLinkIsRefusedAndNotAppendedThrough()
    {
        // Issue 17: with a store folder another user could write to, a serial.log link made root's VMM append guest
        // output to a root-only file.
        var victim = Path.Combine(_dir, "root-only");
        File.WriteAllText(victim, "secret\n");
        File.CreateSymbolicLink(LogPath, victim);
        var error = Assert.Throws<KvmPS.Interop.SymlinkRefusedException>(() => new RotatingLogFile(LogPath));
        Assert.Equal(LogPath, error.Path);
        Assert.Equal("secret\n", File.ReadAllText(victim));
    }

    [Fact]
    public void TheLogIsCreatedOwnerOnly()
    {
        using (var log = new RotatingLogFile(LogPath, RotatingLogFile.MinimumMaxBytes, keptFiles: 1))
            log.Write(new byte[RotatingLogFile.MinimumMaxBytes + 10]);
        const UnixFileMode ownerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite;
#pragma warning disable CA1416 // Linux only
        Assert.Equal(ownerOnly, File.GetUnixFileMode(LogPath));
        Assert.Equal(ownerOnly, File.GetUnixFileMode(LogPath + ".1"));
#pragma warning restore CA1416
    }

    [Fact]
    public void AnExistingLogCountsTowardsTheLimitAndIsRotatedFirst()
    {
        File.WriteAllBytes(LogPath, new byte[5000]);
        using (var log = new RotatingLogFile(LogPath, 8192, keptFiles: 1))
            log.Write(new byte[4000]);
        Assert.Equal(8192, new FileInfo(LogPath + ".1").Length);
        Assert.Equal(5000 + 4000 - 8192, new FileInfo(LogPath).Length);
    }

    [Fact]
    public void WithNoKeptFilesTheLogStartsOverAndWithNoLimitItJustGrows()
    {
        using (var log = new RotatingLogFile(LogPath, 4096, keptFiles: 0))
            log.Write(new byte[10_000]);
        Assert.Equal(10_000 - 2 * 4096, new FileInfo(LogPath).Length);
        Assert.False(File.Exists(LogPath + ".1"));

        File.Delete(LogPath);
        using (var log = new RotatingLogFile(LogPath, 0, keptFiles: 3))
            log.Write(new byte[100_000]);
        Assert.Equal(100_000, new FileInfo(LogPath).Length);
    }

    [Fact]
    public void TheLimitComesFromTheConfigurationAndABadOneIsRefusedByName()
    {
        var config = VmmConfig.FromArgs(["--serial", "file:" + LogPath, "--serial-log-max", "64K", "--serial-log-files", "5"]);
        Assert.Equal(64 * 1024, config.SerialLogMaxBytes);
        Assert.Equal(5, config.SerialLogFiles);
        Assert.Equal(64 * 1024, config.Configuration.SerialLogMaxBytes);
        var defaults = VmmConfig.FromArgs(["--serial", "file:" + LogPath]);
        Assert.Equal(RotatingLogFile.DefaultMaxBytes, defaults.SerialLogMaxBytes);
        Assert.Equal(RotatingLogFile.DefaultKeptFiles, defaults.SerialLogFiles);
        Assert.Equal(0, VmmConfig.FromArgs(["--serial-log-max", "0"]).SerialLogMaxBytes);

        var small = Assert.Throws<VmmConfigException>(() => VmmConfig.FromArgs(["--serial-log-max", "100"]));
        Assert.Contains("--serial-log-max", small.Message);
        var many = Assert.Throws<VmmConfigException>(() => VmmConfig.FromArgs(["--serial-log-files", "1000"]));
        Assert.Contains("--serial-log-files", many.Message);
        var json = Assert.Throws<VmmConfigException>(() => VmmConfig.FromJson("""{"serial_log_max_bytes": 10}"""u8.ToArray(), "vm.json"));
        Assert.Contains("serial_log_max_bytes", json.Message);
    }
}

/// <summary>The published kvmps-vmm with the built-in guest printing far more than the serial limit.</summary>
[Collection("vmm-process")]
public sealed class SerialLogRotationProcessTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kvmps-serialp-").FullName;

    // A jailed VMM rotates the log as the jail's user: the folder is that user's, as management gives it the VM folder.
    public SerialLogRotationProcessTests() => Support.TestJail.GiveToJailUser(_dir);

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    [Fact]
    public void TheBuiltInGuestPrintingInALoopLeavesOnlyTheBoundedFiles()
    {
        string log = Path.Combine(_dir, "serial.log");
        // 300 × "info" (about 90 bytes each): some 27 KB through the UART against a 4 KiB limit and 2 kept files.
        string run = "kvmps.run=" + string.Join(',', Enumerable.Repeat("info", 300)) + ",exit 3";
        var (code, _, stderr) = Support.VmmProcess.Run(TimeSpan.FromSeconds(120),
            "--serial", "file:" + log, "--serial-log-max", "4096", "--serial-log-files", "2", "--cmdline", run);
        Assert.True(code == (3 << 1 | 1), $"exit {code}: {stderr}");

        var files = Directory.GetFiles(_dir).Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(new[] { log, log + ".1", log + ".2" }, files);
        foreach (var f in files) Assert.InRange(new FileInfo(f).Length, 1, 4096);
        Assert.Equal(4096, new FileInfo(log + ".2").Length);
        // The newest file ends with the guest's last words; the oldest boot lines were rotated away.
        Assert.EndsWith("> exit 3\n", File.ReadAllText(log).Replace("\r", ""));
        Assert.DoesNotContain("KvmPS built-in guest v1", string.Concat(files.Select(File.ReadAllText)));
    }
}
