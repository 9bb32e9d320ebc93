using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using KvmPS.Engine.Tests.Firmware;
using KvmPS.Engine.Tests.Support;
using Xunit.Abstractions;

namespace KvmPS.Engine.Tests.RealLinux;

/// <summary>
/// Issue 16's CD-ROM with Linux's own drivers as the client: virtio_scsi binds the controller, the SCSI midlayer finds
/// the MMC LUN and sr makes it <c>/dev/sr0</c>, read-only, the size of the ISO; Linux reads the whole of Debian's
/// grub-rescue ISO through it byte for byte; after <c>media.change</c> ejects the disc Linux's read fails, and after
/// another ISO is inserted it reads the new one, with its size (sr revalidates on open after the unit attention).
/// </summary>
[Trait("Category", "RealLinux")]
[Collection(RealLinuxCollection.Name)]
public sealed class CdromLinuxTests(ITestOutputHelper log)
{
    [Fact]
    public void LinuxReadsTheIsoAndSeesTheDiscChange()
    {
        Assert.True(File.Exists(GrubIsoFactAttribute.Iso), $"{GrubIsoFactAttribute.Iso} is missing (./build.sh setup installs grub-rescue-pc)");
        using var dir = new TempDir();
        string iso = GrubIsoFactAttribute.Iso, other = dir.File("other.iso");
        byte[] otherBytes = SmallIso();
        File.WriteAllBytes(other, otherBytes);

        using var guest = new LinuxGuest(dir, 1, "256M", null, "--device", $"cdrom,path={iso}");
        log.WriteLine($"boot to the agent: {guest.BootTime.TotalSeconds:F1} s");
        var virtio = guest.Run("virtio");
        log.WriteLine(string.Join('\n', virtio));
        Assert.Single(virtio, l => l.Contains("device=0x0008") && l.EndsWith("driver=virtio_scsi"));
        Assert.Equal($"sectors={new FileInfo(iso).Length / 512} ro=1", Block(guest));
        RealLinuxTests.AssertClean(RealLinuxTests.KernelLog(guest));

        // Linux reads the whole disc through virtio_scsi and sr.
        Assert.Equal(RealLinuxTests.Sha(File.ReadAllBytes(iso)), LinuxGuest.Fields(guest.Run("blk sum sr0"), "blk")["sha256"]);

        using var control = new ControlClient(guest.ControlSocket);
        var ejected = control.Ok("media.change", "\"pci\": \"00:01.0\"");
        log.WriteLine($"eject: {ejected}");
        Assert.False(ejected.TryGetProperty("path", out var p) && p.ValueKind == JsonValueKind.String);
        var (rc, noMedium) = guest.RunForRc("blk sum sr0");
        log.WriteLine($"after the eject (rc={rc}): {string.Join(" | ", noMedium)}");
        Assert.NotEqual(0, rc); // no medium: the read fails (sr keeps the old capacity in sysfs until a disc is read)

        var inserted = control.Ok("media.change", $"\"pci\": \"00:01.0\", \"path\": \"{other}\"");
        log.WriteLine($"insert: {inserted}");
        Assert.Equal(RealLinuxTests.Sha(otherBytes), LinuxGuest.Fields(guest.Run("blk sum sr0"), "blk")["sha256"]);
        Assert.Equal($"sectors={otherBytes.Length / 512} ro=1", Block(guest));

        guest.Run("poweroff");
        Assert.Equal(0, guest.WaitForExit(TimeSpan.FromSeconds(90)));
    }

    /// <summary>The agent's <c>blocks</c> line for sr0, without its name and serial.</summary>
    private static string Block(LinuxGuest guest)
    {
        var line = guest.Run("blocks").Single(l => l.StartsWith("block sr0 ", StringComparison.Ordinal));
        return string.Join(' ', line.Split(' ').Where(f => f.StartsWith("sectors=") || f.StartsWith("ro=")));
    }

    /// <summary>
    /// A minimal ISO 9660 image of 64 KiB: the system area, a primary volume descriptor ("CD001", the volume's size in
    /// blocks) and the set terminator, then random data, so its checksum is its own.
    /// </summary>
    private static byte[] SmallIso()
    {
        const int block = 2048, blocks = 32;
        var image = RandomNumberGenerator.GetBytes(block * blocks);
        image.AsSpan(0, 16 * block).Clear();
        var pvd = image.AsSpan(16 * block, block);
        pvd.Clear();
        pvd[0] = 1;
        Encoding.ASCII.GetBytes("CD001").CopyTo(pvd[1..]);
        pvd[6] = 1;
        BitConverter.TryWriteBytes(pvd[80..], blocks); // volume space size, little-endian half of the both-endian field
        var terminator = image.AsSpan(17 * block, block);
        terminator.Clear();
        terminator[0] = 255;
        Encoding.ASCII.GetBytes("CD001").CopyTo(terminator[1..]);
        terminator[6] = 1;
        return image;
    }
}
