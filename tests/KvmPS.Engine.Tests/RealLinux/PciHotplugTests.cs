using System.Diagnostics;
using System.Security.Cryptography;
using KvmPS.Engine.Tests.Support;
using Xunit.Abstractions;

namespace KvmPS.Engine.Tests.RealLinux;

/// <summary>
/// ACPI PCI hot-plug with Linux as the reference client (docs/acpi.md "PCI hot-plug"): Linux's acpiphp finds the
/// DSDT's slot objects under PCI0 at boot; on <c>device.add</c> the GPE runs <c>PSCN</c>, which notifies the slot
/// (Device Check), acpiphp scans the slot and virtio_blk takes the new disk; on <c>device.remove</c> the Eject Request
/// makes Linux release the disk and run the slot's <c>_EJ0</c>, and the VMM closes the image.
/// </summary>
[Trait("Category", "RealLinux")]
[Collection(RealLinuxCollection.Name)]
public class PciHotplugTests(ITestOutputHelper log)
{
    private static readonly TimeSpan GuestActs = TimeSpan.FromMinutes(3);

    private static string Sum(IReadOnlyList<string> reply) => LinuxGuest.Fields(reply, "blk")["sha256"];
    private static string Sha(byte[] data) => Convert.ToHexString(SHA256.HashData(data)).ToLowerInvariant();

    [Fact]
    public void LinuxUsesAHotPluggedVirtioBlkDiskAndReleasesItOnRemoval()
    {
        using var dir = new TempDir();
        string image = dir.File("hot.raw");
        var initial = new byte[2 << 20];
        new Random(42).NextBytes(initial);
        File.WriteAllBytes(image, initial);

        using var guest = new LinuxGuest(dir, 1, "256M", null);
        log.WriteLine($"boot to the agent: {guest.BootTime.TotalSeconds:F1} s");
        Assert.DoesNotContain(guest.Run("blocks"), l => l.Contains("serial=hotdisk"));

        using var control = new ControlClient(guest.ControlSocket);
        var sw = Stopwatch.StartNew();
        var added = control.Ok("device.add", $"\"device\": {{\"type\": \"block\", \"path\": \"{image}\", \"serial\": \"hotdisk\"}}, \"timeout_ms\": 180000");
        log.WriteLine($"device.add: {added} after {sw.Elapsed.TotalSeconds:F1} s");
        Assert.True(added.GetProperty("driver_ready").GetBoolean(), $"Linux's virtio_blk did not take the disk: {added}\n{guest.Diagnostics()}");
        string pci = added.GetProperty("device").GetProperty("pci").GetString()!;

        // The disk appears in /sys/block; what the host wrote reads back, what Linux writes lands in the image.
        string disk = WaitForDisk(guest, present: true)!;
        log.WriteLine($"device.add to /sys/block/{disk}: {sw.Elapsed.TotalSeconds:F1} s");
        Assert.Contains(guest.Run("pci"), l => l.StartsWith($"pci 0000:{pci} vendor=0x1af4 device=0x1042") && l.EndsWith("driver=virtio-pci"));
        Assert.Equal(Sha(initial), Sum(guest.Run($"blk sum {disk}")));
        string written = Sum(guest.Run($"blk fill {disk} 256"));
        Assert.NotEqual(Sha(initial), written);
        Assert.Equal(written, Sha(File.ReadAllBytes(image)));

        // Removal: Linux releases the disk and ejects the slot; the VMM then closes the image.
        sw.Restart();
        var removed = control.Ok("device.remove", $"\"pci\": \"{pci}\", \"timeout_ms\": 180000");
        log.WriteLine($"device.remove: {removed} after {sw.Elapsed.TotalSeconds:F1} s");
        Assert.Equal("removed", removed.GetProperty("state").GetString());
        WaitForDisk(guest, present: false);
        Assert.DoesNotContain(guest.Run("pci"), l => l.StartsWith($"pci 0000:{pci} "));
        Assert.Equal(0, control.Ok("describe").GetProperty("devices").GetArrayLength());
        Assert.DoesNotContain(Directory.GetFiles($"/proc/{guest.Pid}/fd"), fd => { try { return new FileInfo(fd).LinkTarget == image; } catch (IOException) { return false; } });

        RealLinuxTests.AssertClean(RealLinuxTests.KernelLog(guest, LinuxGuest.CommandTimeout));
        guest.Run("poweroff");
        Assert.Equal(0, guest.WaitForExit(TimeSpan.FromSeconds(90)));
    }

    /// <summary>Polls the agent's <c>blocks</c> until the disk with serial "hotdisk" is there (its name) or gone (null).</summary>
    private static string? WaitForDisk(LinuxGuest guest, bool present)
    {
        var deadline = DateTime.UtcNow + GuestActs;
        while (true)
        {
            var blocks = guest.Run("blocks");
            var line = blocks.FirstOrDefault(l => l.Contains("serial=hotdisk"));
            if ((line is not null) == present) return line?.Split(' ')[1];
            if (DateTime.UtcNow > deadline) Assert.Fail($"the hot-plugged disk is {(present ? "not there" : "still there")} after {GuestActs}: {string.Join('\n', blocks)}\n{guest.Diagnostics()}");
            Thread.Sleep(1000);
        }
    }
}
