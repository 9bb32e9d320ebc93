using System.Buffers.Binary;
using System.Diagnostics;
using System.Text.RegularExpressions;
using KvmPS.Devices;
using KvmPS.Devices.Config;
using KvmPS.Devices.Virtio.Block;
using KvmPS.Engine.Tests.Support;
using KvmPS.Storage;
using KvmPS.Vm;
using Xunit.Abstractions;

namespace KvmPS.Engine.Tests.Devices;

/// <summary>Host-side twins of the built-in guest's `blk write` pattern and `blk read` checksum, and qemu-img.</summary>
internal static class BlockTestData
{
    /// <summary>The bytes `blk write SECTOR COUNT SEED` writes (guest/src/virtio_blk.c): an LCG over 32-bit LE words.</summary>
    public static byte[] Pattern(int sectors, uint seed)
    {
        var b = new byte[sectors * 512];
        uint x = unchecked(seed * 2654435761u + 12345u);
        for (int i = 0; i < b.Length / 4; i++)
        {
            x = unchecked(x * 1664525u + 1013904223u);
            BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4 * i), x);
        }
        return b;
    }

    private static readonly uint[] CrcTable = BuildCrcTable();

    private static uint[] BuildCrcTable()
    {
        var t = new uint[256];
        for (uint i = 0; i < 256; i++)
        {
            uint c = i;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            t[i] = c;
        }
        return t;
    }

    /// <summary>CRC-32 (IEEE 802.3, reflected, as zlib).</summary>
    public static uint Crc32(ReadOnlySpan<byte> data)
    {
        uint crc = 0xFFFFFFFFu;
        foreach (byte b in data) crc = CrcTable[(crc ^ b) & 0xFF] ^ (crc >> 8);
        return crc ^ 0xFFFFFFFFu;
    }

    public static string CrcLine(ReadOnlySpan<byte> data) => $"blk: crc32 {Crc32(data):x8}";

    public static byte[] ReadImage(string path, ulong offset, int bytes)
    {
        using var disk = DiskImageFactory.Open(path, DiskImageFormat.Auto, readOnly: true);
        var b = new byte[bytes];
        disk.Read(offset, b);
        return b;
    }

    public static readonly string? QemuImg = FindOnPath("qemu-img");

    private static string? FindOnPath(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(d => Path.Combine(d, name)).FirstOrDefault(File.Exists);

    /// <summary>Runs qemu-img check on a qcow2 image; returns (exit code, output).</summary>
    public static (int Code, string Output) QemuImgCheck(string image)
    {
        var psi = new ProcessStartInfo(QemuImg!) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "check", "-f", "qcow2", image }) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(60_000)) { p.Kill(); throw new TimeoutException("qemu-img check timed out"); }
        return (p.ExitCode, stdout.Result + stderr.Result);
    }
}

/// <summary>A fact skipped when qemu-img is not installed (as QemuImgFact in KvmPS.Storage.Tests).</summary>
public sealed class BlockQemuImgFactAttribute : FactAttribute
{
    public BlockQemuImgFactAttribute()
    {
        if (BlockTestData.QemuImg is null) Skip = "qemu-img not found on PATH (install the qemu-utils package to run qemu interop tests).";
    }
}

/// <summary>The built-in guest's virtio-blk driver against the real engine (in-process KVM) on raw and qcow2 images.</summary>
public class VirtioBlockGuestTests(ITestOutputHelper log)
{
    private const ulong DiskBytes = 4UL << 20; // 8192 sectors

    private (string Output, VmExit Exit, List<string> DeviceLog) Run(string commands, params BlockDeviceConfig[] disks)
    {
        var deviceLog = new List<string>();
        using var run = new GuestRun(new MachineConfig
        {
            Devices = disks,
            Cmdline = $"kvmps.run={commands}",
            DeviceLog = m => { lock (deviceLog) deviceLog.Add(m); },
        });
        var exit = run.RunToExit(TimeSpan.FromSeconds(120));
        log.WriteLine(run.Output);
        lock (deviceLog) foreach (var l in deviceLog) log.WriteLine("device: " + l);
        return (run.Output, exit, deviceLog);
    }

    private static string CreateImage(TempDir dir, string format)
    {
        string path = dir.File($"disk.{format}");
        if (format == "qcow2") DiskImageFactory.CreateQcow2(path, DiskBytes);
        else DiskImageFactory.CreateRaw(path, DiskBytes);
        return path;
    }

    [Theory]
    [InlineData("raw")]
    [InlineData("qcow2")]
    public void WriteFlushReadRoundTripsThroughTheImage(string format)
    {
        using var dir = new TempDir();
        string path = CreateImage(dir, format);
        var r = Run("blk info,blk write 0 64 7,blk flush,blk read 0 64,blk write 1000 200 9,blk read 1000 200,exit 0",
            new BlockDeviceConfig { Path = path, Serial = "kvmps-disk-0001" });
        Assert.Equal(VmExitKind.DebugExit, r.Exit.Kind);
        Assert.Equal(0, r.Exit.DebugExitValue);
        Assert.Contains("blk: capacity 8192 serial kvmps-disk-0001 ro 0", r.Output);
        Assert.Contains("blk: wrote 64", r.Output);
        Assert.Contains("blk: flushed", r.Output);
        Assert.Contains("blk: wrote 200", r.Output);
        Assert.DoesNotContain("blk: error", r.Output);
        var first = BlockTestData.Pattern(64, 7);
        var second = BlockTestData.Pattern(200, 9);
        Assert.Contains(BlockTestData.CrcLine(first), r.Output);
        Assert.Contains(BlockTestData.CrcLine(second), r.Output);

        // The VM is gone (image lock released): the host sees exactly what the guest wrote.
        Assert.Equal(first, BlockTestData.ReadImage(path, 0, first.Length));
        Assert.Equal(second, BlockTestData.ReadImage(path, 1000 * 512, second.Length));
        Assert.Equal(new byte[512], BlockTestData.ReadImage(path, 64 * 512, 512));
        if (format == "qcow2" && BlockTestData.QemuImg is not null)
        {
            var (code, output) = BlockTestData.QemuImgCheck(path);
            log.WriteLine(output);
            Assert.True(code == 0, $"qemu-img check: exit {code}\n{output}");
        }
    }

    [BlockQemuImgFact]
    public void GuestWrittenQcow2PassesQemuImgCheck()
    {
        using var dir = new TempDir();
        string path = CreateImage(dir, "qcow2");
        var r = Run("blk write 0 300 3,blk zero 0 128 unmap,blk discard 128 128,blk write 4000 10 4,blk flush,exit 0",
            new BlockDeviceConfig { Path = path });
        Assert.DoesNotContain("blk: error", r.Output);
        var (code, output) = BlockTestData.QemuImgCheck(path);
        log.WriteLine(output);
        Assert.True(code == 0, $"qemu-img check: exit {code}\n{output}");
    }

    [Fact]
    public void ReadOnlyAttachRefusesWritesAndLeavesTheImageAlone()
    {
        using var dir = new TempDir();
        string path = CreateImage(dir, "raw");
        var content = BlockTestData.Pattern(16, 11);
        using (var disk = DiskImageFactory.Open(path)) disk.Write(0, content);
        byte[] before = File.ReadAllBytes(path);

        var r = Run("blk info,blk write 0 8 1,blk zero 0 8,blk discard 0 8,blk flush,blk read 0 16,exit 0",
            new BlockDeviceConfig { Path = path, ReadOnly = true, Serial = "ro-disk" });
        Assert.Equal(0, r.Exit.DebugExitValue);
        Assert.Contains("blk: capacity 8192 serial ro-disk ro 1", r.Output);
        Assert.Matches(@"> blk write 0 8 1\r?\nblk: error 1\r?\n", r.Output);   // IOERR
        Assert.Matches(@"> blk zero 0 8\r?\nblk: error 1\r?\n", r.Output);      // IOERR
        Assert.Matches(@"> blk discard 0 8\r?\nblk: error 2\r?\n", r.Output);   // DISCARD not offered read-only: UNSUPP
        Assert.Contains("blk: flushed", r.Output);
        Assert.Contains(BlockTestData.CrcLine(content), r.Output);
        Assert.Equal(before, File.ReadAllBytes(path));
    }

    [Theory]
    [InlineData("raw")]
    [InlineData("qcow2")]
    public void DiscardAndWriteZeroesReadBackAsZeroes(string format)
    {
        using var dir = new TempDir();
        string path = CreateImage(dir, format);
        // Sectors 128-255 are exactly the second 64 KiB qcow2 cluster (whole clusters are released by discard).
        var r = Run("blk write 0 256 5,blk zero 0 16,blk zero 16 16 unmap,blk discard 128 128,blk read 0 32,blk read 32 96,blk read 128 128,"
                    + "blk read 8190 4,blk zero 8190 4,blk read 8191 1,exit 0",
            new BlockDeviceConfig { Path = path });
        Assert.Equal(0, r.Exit.DebugExitValue);
        Assert.Contains("blk: zeroed 16", r.Output);
        Assert.Contains("blk: discarded 128", r.Output);
        var pattern = BlockTestData.Pattern(256, 5);
        Assert.Contains(BlockTestData.CrcLine(new byte[32 * 512]), r.Output);
        Assert.Contains(BlockTestData.CrcLine(pattern.AsSpan(32 * 512, 96 * 512)), r.Output);
        Assert.Contains(BlockTestData.CrcLine(new byte[128 * 512]), r.Output);
        // Past the end: IOERR for reads and write-zeroes; the last sector itself is readable.
        Assert.Matches(@"> blk read 8190 4\r?\nblk: error 1\r?\n", r.Output);
        Assert.Matches(@"> blk zero 8190 4\r?\nblk: error 1\r?\n", r.Output);
        Assert.Contains(BlockTestData.CrcLine(new byte[512]), r.Output);

        var image = BlockTestData.ReadImage(path, 0, 256 * 512);
        Assert.Equal(new byte[32 * 512], image[..(32 * 512)]);
        Assert.Equal(pattern[(32 * 512)..(128 * 512)], image[(32 * 512)..(128 * 512)]);
        Assert.Equal(new byte[128 * 512], image[(128 * 512)..]);
    }

    [Fact]
    public void TwoDisksAndNoDisk()
    {
        var none = Run("blk info,exit 0");
        Assert.Contains("blk: no virtio-blk device", none.Output);

        using var dir = new TempDir();
        string a = CreateImage(dir, "raw"), b = CreateImage(dir, "qcow2");
        var r = Run("lspci,blk info,exit 0", new BlockDeviceConfig { Path = a, Serial = "first" }, new BlockDeviceConfig { Path = b, Serial = "second" });
        Assert.Contains("pci: 00:01.0 1af4:1042 class 010000", r.Output);
        Assert.Contains("pci: 00:02.0 1af4:1042 class 010000", r.Output);
        Assert.Contains("serial first", r.Output); // the guest drives the first one it finds
    }
}
