using System.Text;
using System.Text.Json;
using KvmPS.Engine.Tests.Support;
using Xunit.Abstractions;
using static KvmPS.Engine.Tests.Acpi.BuiltInGuestPciHotplugTests;
using static KvmPS.Engine.Tests.State.WorkloadConsole;

namespace KvmPS.Engine.Tests.Acpi;

/// <summary>
/// Live removal of configured (cold-plugged) devices with the built-in guest in a kvmps-vmm process: a second disk
/// the VMM was started with leaves through <c>device.remove</c> like a hot-plugged one (eject request, the guest's
/// <c>_EJ0</c>, the image closed), stays removed across a guest reboot and a snapshot/restore, and the devices that
/// must stay (the first disk, rng) are refused naming why. The VMM: first disk in 00:01.0, second in 00:02.0, rng in 00:03.0.
/// </summary>
[Collection("vmm-process")]
public class BuiltInGuestConfiguredRemovalTests(ITestOutputHelper log)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);
    private const int DiskBytes = 4 << 20;

    private sealed class Guest(ControlClient console, string serial) : IDisposable
    {
        public string Serial => serial;
        public void Dispose() => console.Dispose();
        public void Send(string command) => console.Stream.Write(Encoding.ASCII.GetBytes(command + "\r"));
    }

    private static Guest Attach(string sock, string serial)
    {
        var console = new ControlClient(sock);
        Assert.True(console.Ok("console.attach", "\"replay\": false").GetProperty("attached").GetBoolean());
        return new Guest(console, serial);
    }

    private string Type(Guest guest, string command, string expect)
    {
        int before = Occurrences(ReadText(guest.Serial), expect);
        log.WriteLine($"> {command}");
        guest.Send(command);
        Assert.True(WaitForFile(guest.Serial, t => Occurrences(t, expect) > before, Timeout), $"no '{expect}' after '{command}':\n{Tail(ReadText(guest.Serial))}");
        return ReadText(guest.Serial);
    }

    private static string Tail(string text) => text.Length > 3000 ? text[^3000..] : text;

    private static string MakeDisk(TempDir dir, string name)
    {
        string path = dir.File(name);
        using (var f = File.Create(path)) f.SetLength(DiskBytes);
        return path;
    }

    /// <summary>"pci type" per described device, " hot" for hot-plugged, " removable" when describe says device.remove can take it.</summary>
    private static string[] DescribedDevices(ControlClient client) =>
        [.. client.Ok("describe").GetProperty("devices").EnumerateArray().Select(d =>
            $"{d.GetProperty("pci").GetString()} {d.GetProperty("type").GetString()}{(d.GetProperty("hotplugged").GetBoolean() ? " hot" : "")}{(d.GetProperty("removable").GetBoolean() ? " removable" : "")}")];

    private static string ErrorMessage(JsonElement reply)
    {
        Assert.False(reply.GetProperty("ok").GetBoolean(), reply.ToString());
        Assert.Equal("InvalidArgument", reply.GetProperty("error").GetProperty("code").GetString());
        return reply.GetProperty("error").GetProperty("message").GetString()!;
    }

    private static string[] TwoDisksAndRng(string first, string second, params string[] extra) =>
        [.. extra, "--device", $"block,path={first}", "--device", $"block,path={second}", "--device", "rng"];

    [Fact]
    public void ASecondConfiguredDiskIsRemovedLiveClosedOnTheHostAndStaysRemovedAcrossAReboot()
    {
        using var dir = new TempDir();
        string sock = dir.File("c.sock"), serial = dir.File("serial.log"), first = MakeDisk(dir, "d0.raw"), second = MakeDisk(dir, "d1.raw");
        using var vmm = new VmmProcess(TwoDisksAndRng(first, second, "--control-socket", sock, "--serial", "file:" + serial));
        using var client = new ControlClient(sock);
        client.WaitForState("Running", Timeout);
        Assert.True(WaitForFile(serial, t => t.Contains("ready"), Timeout), ReadText(serial));
        Assert.Equal(["00:01.0 block", "00:02.0 block removable", "00:03.0 rng"], DescribedDevices(client));
        using var guest = Attach(sock, serial);
        // The guest's PCI hot-plug controller lists the removable configured slot (2) beside the hot-plug slots (4-31).
        Type(guest, "info", "pcihp: gpe=1 slots=fffffff4");

        // Both disks written through the guest's blk driver, each with its own pattern.
        Type(guest, "blk @02 write 0 32 9", "blk: wrote 32");
        Type(guest, "blk @02 read 0 32", $"blk: crc32 {ExpectedCrc(32, 9)}");
        Type(guest, "blk @01 write 0 16 4", "blk: wrote 16");
        Type(guest, "blk @02 flush", "blk: flushed");
        Assert.True(HasOpen(vmm, second));

        var removed = client.Ok("device.remove", "\"pci\": \"00:02.0\", \"timeout_ms\": 60000");
        Assert.Equal("removed", removed.GetProperty("state").GetString());
        Assert.False(removed.GetProperty("timed_out").GetBoolean());
        Assert.True(WaitForFile(serial, t => t.Contains("pci: slot 02 ejected (driver released)"), Timeout), Tail(ReadText(serial)));
        Assert.Equal(["00:01.0 block", "00:03.0 rng"], DescribedDevices(client));
        Assert.False(HasOpen(vmm, second));
        Assert.True(HasOpen(vmm, first));
        Type(guest, "blk @02 info", "blk: no virtio-blk device in slot 02");
        Type(guest, "blk @01 read 0 16", $"blk: crc32 {ExpectedCrc(16, 4)}");
        Assert.Contains("already removed", ErrorMessage(client.Request("device.remove", "\"pci\": \"00:02.0\"")));
        // The image is unlocked: the same file can be hot-added again (a writer's lock), and it holds what the guest wrote.
        // No wait for DRIVER_OK: the guest's one blk driver is busy with the first disk until `blk @04` moves it.
        var back = client.AddDisk(second);
        Assert.Equal("00:04.0", back.GetProperty("device").GetProperty("pci").GetString()); // not into the removed slot
        Type(guest, "blk @04 read 0 32", $"blk: crc32 {ExpectedCrc(32, 9)}");
        Assert.Equal("removed", client.Ok("device.remove", "\"pci\": \"00:04.0\", \"timeout_ms\": 60000").GetProperty("state").GetString());
        Assert.False(HasOpen(vmm, second));

        // A guest reboot builds the machine again: the removed disk's slot stays empty, the others keep theirs.
        int booted = Occurrences(ReadText(serial), "KvmPS built-in guest v1");
        guest.Send("reboot");
        Assert.True(WaitForFile(serial, t => Occurrences(t, "ready") >= 2 && Occurrences(t, "KvmPS built-in guest v1") > booted, Timeout), Tail(ReadText(serial)));
        Assert.Equal(2, client.Ok("status").GetProperty("boots").GetInt32());
        Assert.Equal(["00:01.0 block", "00:03.0 rng"], DescribedDevices(client));
        Assert.False(HasOpen(vmm, second));
        Type(guest, "blk @02 info", "blk: no virtio-blk device in slot 02");
        Type(guest, "blk @01 read 0 16", $"blk: crc32 {ExpectedCrc(16, 4)}");
        client.Ok("stop", "\"graceful\": false");
        Assert.Equal(0, vmm.WaitForExit(Timeout));
    }

    [Fact]
    public void TheFirstDiskAndDevicesThatMustStayAreRefusedNamingWhy()
    {
        using var dir = new TempDir();
        string sock = dir.File("c.sock"), first = MakeDisk(dir, "d0.raw"), second = MakeDisk(dir, "d1.raw");
        using var vmm = new VmmProcess(TwoDisksAndRng(first, second, "--control-socket", sock, "--serial", "none"));
        using var client = new ControlClient(sock);
        client.WaitForState("Running", Timeout);
        Assert.Contains("first disk (the boot disk)", ErrorMessage(client.Request("device.remove", "\"pci\": \"00:01.0\", \"timeout_ms\": 1000")));
        Assert.Contains("a rng device is part of the machine", ErrorMessage(client.Request("device.remove", "\"pci\": \"00:03.0\"")));
        Assert.Contains("no hot-plugged device at PCI address 00:09.0", ErrorMessage(client.Request("device.remove", "\"pci\": \"00:09.0\"")));
        Assert.Equal(["00:01.0 block", "00:02.0 block removable", "00:03.0 rng"], DescribedDevices(client));
        Assert.True(HasOpen(vmm, first));
        Assert.Equal("Running", client.Ok("status").GetProperty("state").GetString());
        client.Ok("stop", "\"graceful\": false");
        Assert.Equal(0, vmm.WaitForExit(Timeout));
    }

    [Fact]
    public void AGuestThatNeverEjectsKeepsTheConfiguredDiskWorkingAndTheRemovalTimesOut()
    {
        using var dir = new TempDir();
        string sock = dir.File("c.sock"), serial = dir.File("serial.log"), first = MakeDisk(dir, "d0.raw"), second = MakeDisk(dir, "d1.raw");
        // kvmps.nosci: the guest takes no ACPI event, as an OS without PCI hot-plug support.
        using var vmm = new VmmProcess(TwoDisksAndRng(first, second, "--control-socket", sock, "--serial", "file:" + serial, "--cmdline", "kvmps.nosci"));
        using var client = new ControlClient(sock);
        client.WaitForState("Running", Timeout);
        Assert.True(WaitForFile(serial, t => t.Contains("ready"), Timeout), ReadText(serial));

        var removing = client.Ok("device.remove", "\"pci\": \"00:02.0\", \"timeout_ms\": 1500");
        Assert.Equal("removing", removing.GetProperty("state").GetString());
        Assert.True(removing.GetProperty("timed_out").GetBoolean());
        Assert.Equal(["00:01.0 block", "00:02.0 block removable", "00:03.0 rng"], DescribedDevices(client));
        Assert.True(HasOpen(vmm, second));
        using var guest = Attach(sock, serial);
        Type(guest, "blk @02 write 8 16 3", "blk: wrote 16");
        Type(guest, "blk @02 read 8 16", $"blk: crc32 {ExpectedCrc(16, 3)}");
        Assert.Equal("removing", client.Ok("device.remove", "\"pci\": \"00:02.0\"").GetProperty("state").GetString());
        client.Ok("stop", "\"graceful\": false");
        Assert.Equal(0, vmm.WaitForExit(Timeout));
    }

    [Fact]
    public void ASnapshotAfterTheRemovalRestoresWithoutTheDiskEvenWhenItsImageIsGone()
    {
        using var dir = new TempDir();
        string sock = dir.File("a.sock"), serial = dir.File("a.log"), first = MakeDisk(dir, "d0.raw"), second = MakeDisk(dir, "d1.raw"), snapshot = dir.File("snap");
        using (var vmm = new VmmProcess(TwoDisksAndRng(first, second, "--control-socket", sock, "--serial", "file:" + serial)))
        {
            using var client = new ControlClient(sock);
            client.WaitForState("Running", Timeout);
            Assert.True(WaitForFile(serial, t => t.Contains("ready"), Timeout), ReadText(serial));
            using var guest = Attach(sock, serial);
            Type(guest, "blk @01 write 0 16 21", "blk: wrote 16");
            Assert.Equal("removed", client.Ok("device.remove", "\"pci\": \"00:02.0\", \"timeout_ms\": 60000").GetProperty("state").GetString());
            client.Ok("snapshot.create", $"\"path\": \"{snapshot}\", \"resume\": false, \"disks\": \"ignore\"");
            vmm.Signal(9);
            vmm.WaitForExit(Timeout);
        }
        // The removed disk's image is deleted: the restore must not need it (the snapshot's config.json still lists it).
        File.Delete(second);

        string sock2 = dir.File("b.sock"), serial2 = dir.File("b.log");
        using var restored = new VmmProcess("--restore", snapshot, "--serial", "file:" + serial2, "--control-socket", sock2);
        using var client2 = new ControlClient(sock2);
        client2.WaitForState("Running", Timeout);
        log.WriteLine(restored.Stderr);
        Assert.Equal(["00:01.0 block", "00:03.0 rng"], DescribedDevices(client2));
        using var guest2 = Attach(sock2, serial2);
        Type(guest2, "blk @01 read 0 16", $"blk: crc32 {ExpectedCrc(16, 21)}");
        Type(guest2, "blk @02 info", "blk: no virtio-blk device in slot 02");
        Assert.Contains("already removed", ErrorMessage(client2.Request("device.remove", "\"pci\": \"00:02.0\"")));
        client2.Ok("stop", "\"graceful\": false");
        Assert.Equal(0, restored.WaitForExit(Timeout));
    }

    /// <summary>Waits until an --incoming VMM listens (its log line), so the source's connect finds it.</summary>
    private static void WaitListening(VmmProcess destination)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (!destination.Stderr.Contains("waiting for a migration stream") && DateTime.UtcNow < deadline && !destination.HasExited) Thread.Sleep(10);
        Assert.Contains("waiting for a migration stream", destination.Stderr);
    }

    [Fact]
    public void AVmThatLostAConfiguredDiskMigratesOnlyToAVmmWhoseConfigNamesItRemoved()
    {
        using var dir = new TempDir();
        string sock = dir.File("src.sock"), serial = dir.File("src.log"), first = MakeDisk(dir, "d0.raw"), second = MakeDisk(dir, "d1.raw");
        // Read-only disks: both VMMs of this host may hold them open at once (a writer's lock would refuse the destination).
        string[] devices = ["--device", $"block,path={first},read_only=on", "--device", $"block,path={second},read_only=on", "--device", "rng"];
        using var source = new VmmProcess([.. devices, "--control-socket", sock, "--serial", "file:" + serial]);
        using var client = new ControlClient(sock);
        client.WaitForState("Running", Timeout);
        Assert.True(WaitForFile(serial, t => t.Contains("ready"), Timeout), ReadText(serial));
        Assert.Equal("removed", client.Ok("device.remove", "\"pci\": \"00:02.0\", \"timeout_ms\": 60000").GetProperty("state").GetString());

        // A destination configured with the disk still present: the machines differ, the source keeps its VM.
        string uriA = "unix:" + dir.File("a.sock");
        using (var withDisk = new VmmProcess([.. devices, "--incoming", uriA, "--serial", "none"]))
        {
            WaitListening(withDisk);
            client.Ok("migrate", $"\"uri\": \"{uriA}\"");
            Assert.Equal(16, withDisk.WaitForExit(Timeout));
            log.WriteLine(withDisk.Stderr);
            Assert.Contains("device 00:02.0 block", withDisk.Stderr);
            var deadline = DateTime.UtcNow + Timeout;
            while (client.Ok("migrate.status").GetProperty("phase").GetString() is not ("failed" or "cancelled") && DateTime.UtcNow < deadline) Thread.Sleep(20);
            Assert.Equal("Running", client.Ok("status").GetProperty("state").GetString());
        }

        // The destination's config: the source's devices, by position, with the lost one named in removed_devices.
        string config = dir.File("dst.json");
        File.WriteAllText(config, $$"""
            { "devices": [ { "type": "block", "path": "{{first}}", "read_only": true },
                           { "type": "block", "path": "{{second}}", "read_only": true }, { "type": "rng" } ],
              "removed_devices": [ "00:02.0" ] }
            """);
        string uriB = "unix:" + dir.File("b.sock"), dstSock = dir.File("dst.sock"), dstSerial = dir.File("dst.log");
        using var destination = new VmmProcess("--config", config, "--incoming", uriB, "--serial", "file:" + dstSerial, "--control-socket", dstSock);
        WaitListening(destination);
        client.Ok("migrate", $"\"uri\": \"{uriB}\"");
        Assert.Equal(14, source.WaitForExit(Timeout));
        log.WriteLine(destination.Stderr);
        using var dst = new ControlClient(dstSock);
        dst.WaitForState("Running", Timeout);
        Assert.Equal(["00:01.0 block", "00:03.0 rng"], DescribedDevices(dst));
        Assert.False(HasOpen(destination, second));
        Assert.True(HasOpen(destination, first));
        using var guest = Attach(dstSock, dstSerial);
        Type(guest, "blk @01 read 0 8", $"blk: crc32 {Crc32(new byte[8 * 512])}");
        Type(guest, "blk @02 info", "blk: no virtio-blk device in slot 02");
        dst.Ok("stop", "\"graceful\": false");
        Assert.Equal(0, destination.WaitForExit(Timeout));
    }
}
