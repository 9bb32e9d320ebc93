using System.Text;
using System.Text.Json;
using KvmPS.Engine.Tests.Support;
using Xunit.Abstractions;
using static KvmPS.Engine.Tests.State.WorkloadConsole;

namespace KvmPS.Engine.Tests.Acpi;

/// <summary>
/// ACPI PCI hot-plug of virtio-blk with the built-in guest in a kvmps-vmm process (device.add / device.remove): the
/// guest's SCI handler runs the PCI scan on GPE 1, brings an added disk up with its driver, and on an eject request
/// resets the device and ejects the slot; the VMM then closes the image. <c>info</c> prints
/// "pcihp: gpe=1 slots=BITMAP devices=SS:vvvv:dddd,...". Bad input is refused naming it, with nothing changed.
/// </summary>
[Collection("vmm-process")]
public class BuiltInGuestPciHotplugTests(ITestOutputHelper log)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);
    private const int DiskBytes = 4 << 20;

    /// <summary>A guest session: the console to type on and the serial file everything the guest prints lands in.</summary>
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

    /// <summary>Waits until the serial log has one more <paramref name="text"/> than it had before <paramref name="action"/>.</summary>
    private string After(Guest guest, string text, Action action)
    {
        int before = Occurrences(ReadText(guest.Serial), text);
        action();
        Assert.True(WaitForFile(guest.Serial, t => Occurrences(t, text) > before, Timeout), $"no '{text}' in the guest's output:\n{Tail(ReadText(guest.Serial))}");
        return ReadText(guest.Serial);
    }

    private string Type(Guest guest, string command, string expect) => After(guest, expect, () => { log.WriteLine($"> {command}"); guest.Send(command); });

    private static string Tail(string text) => text.Length > 3000 ? text[^3000..] : text;

    /// <summary>The CRC-32 the guest's <c>blk read</c> prints for what <c>blk write 0 SECTORS SEED</c> wrote (guest/src/virtio_blk.c).</summary>
    internal static string ExpectedCrc(int sectors, uint seed)
    {
        var bytes = new byte[sectors * 512];
        uint x = unchecked(seed * 2654435761u + 12345u);
        for (int i = 0; i < bytes.Length; i += 4)
        {
            x = unchecked(x * 1664525u + 1013904223u);
            BitConverter.TryWriteBytes(bytes.AsSpan(i), x);
        }
        return Crc32(bytes);
    }

    internal static string Crc32(ReadOnlySpan<byte> data)
    {
        uint crc = 0xFFFFFFFF;
        foreach (byte b in data)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++) crc = (crc & 1) != 0 ? 0xEDB88320u ^ (crc >> 1) : crc >> 1;
        }
        return $"{crc ^ 0xFFFFFFFF:x8}";
    }

    private static string MakeDisk(TempDir dir, string name)
    {
        string path = dir.File(name);
        using (var f = File.Create(path)) f.SetLength(DiskBytes);
        return path;
    }

    /// <summary>Whether the VMM process has <paramref name="path"/> open.</summary>
    internal static bool HasOpen(VmmProcess vmm, string path) =>
        Directory.GetFiles($"/proc/{vmm.Pid}/fd").Any(fd => { try { return new FileInfo(fd).LinkTarget == path; } catch (IOException) { return false; } });

    /// <summary>"pci type" per described device, " hot" added for one describe marks hot-plugged.</summary>
    private static string[] DescribedDevices(ControlClient client) =>
        [.. client.Ok("describe").GetProperty("devices").EnumerateArray().Select(d =>
            $"{d.GetProperty("pci").GetString()} {d.GetProperty("type").GetString()}{(d.GetProperty("hotplugged").GetBoolean() ? " hot" : "")}")];

    private static JsonElement Error(JsonElement reply, string code)
    {
        Assert.False(reply.GetProperty("ok").GetBoolean(), reply.ToString());
        var error = reply.GetProperty("error");
        Assert.Equal(code, error.GetProperty("code").GetString());
        return error;
    }

    [Fact]
    public void AHotAddedDiskIsWrittenAndReadWithItsCrcThenEjectedByTheGuestAndClosedByTheVmm()
    {
        using var dir = new TempDir();
        string sock = dir.File("c.sock"), serial = dir.File("serial.log"), disk = MakeDisk(dir, "hot.raw");
        using var vmm = new VmmProcess("--control-socket", sock, "--serial", "file:" + serial);
        using var client = new ControlClient(sock);
        client.WaitForState("Running", Timeout);
        Assert.True(WaitForFile(serial, t => t.Contains("ready"), Timeout), ReadText(serial));
        using var guest = Attach(sock, serial);
        Type(guest, "info", "pcihp: gpe=1 slots=fffffffe devices=-");

        // Added into the lowest free slot: the guest's scan brings the disk up with its driver (DRIVER_OK within the wait).
        var added = client.AddDisk(disk, $", \"timeout_ms\": 60000");
        log.WriteLine(added.ToString());
        Assert.True(added.GetProperty("driver_ready").GetBoolean(), added.ToString());
        Assert.False(added.GetProperty("timed_out").GetBoolean());
        Assert.Equal("00:01.0", added.GetProperty("device").GetProperty("pci").GetString());
        Assert.Equal(disk, added.GetProperty("device").GetProperty("path").GetString());
        Assert.True(WaitForFile(serial, t => t.Contains("pci: slot 01 added 1af4:1042 driver ready"), Timeout), Tail(ReadText(serial)));
        Assert.Equal(["00:01.0 block hot"], DescribedDevices(client));
        Type(guest, "info", "pcihp: gpe=1 slots=fffffffe devices=01:1af4:1042\r\n");

        // Written and read back through the hot-added disk; the image on the host holds what the guest wrote.
        Type(guest, "blk write 0 64 7", "blk: wrote 64");
        string crc = ExpectedCrc(64, 7);
        Type(guest, "blk read 0 64", $"blk: crc32 {crc}");
        Type(guest, "blk flush", "blk: flushed");
        using (var image = new FileStream(disk, FileMode.Open, FileAccess.Read, FileShare.ReadWrite))
        {
            var data = new byte[64 * 512];
            image.ReadExactly(data);
            Assert.Equal(crc, Crc32(data));
        }
        Assert.True(HasOpen(vmm, disk));

        // Removal: the guest resets the device and ejects the slot; the VMM closes the image.
        var removed = client.Ok("device.remove", "\"pci\": \"00:01.0\", \"timeout_ms\": 60000");
        Assert.Equal("removed", removed.GetProperty("state").GetString());
        Assert.False(removed.GetProperty("timed_out").GetBoolean());
        Assert.True(WaitForFile(serial, t => t.Contains("pci: slot 01 ejected (driver released)"), Timeout), Tail(ReadText(serial)));
        Assert.Empty(DescribedDevices(client));
        Assert.False(HasOpen(vmm, disk));
        Type(guest, "info", "pcihp: gpe=1 slots=fffffffe devices=-");
        Type(guest, "blk info", "blk: no virtio-blk device");
        var again = client.Request("device.remove", "\"pci\": \"00:01.0\"");
        Assert.Contains("no hot-plugged device at PCI address 00:01.0", Error(again, "InvalidArgument").GetProperty("message").GetString());

        // The same image again, in a slot of our choosing: the lock was released, and the data is still there.
        var back = client.AddDisk(disk, $", \"pci\": \"00:07.0\", \"timeout_ms\": 60000");
        Assert.Equal("00:07.0", back.GetProperty("device").GetProperty("pci").GetString());
        Assert.True(back.GetProperty("driver_ready").GetBoolean());
        Type(guest, "blk read 0 64", $"blk: crc32 {crc}");
        Assert.Equal("Running", client.Ok("status").GetProperty("state").GetString());
        client.Ok("stop", "\"graceful\": false");
        Assert.Equal(0, vmm.WaitForExit(Timeout));
    }

    [Fact]
    public void AHotPluggedDiskStaysPluggedAcrossAGuestRebootAndCanStillBeRemoved()
    {
        using var dir = new TempDir();
        string sock = dir.File("c.sock"), serial = dir.File("serial.log"), disk = MakeDisk(dir, "d.raw");
        using var vmm = new VmmProcess("--control-socket", sock, "--serial", "file:" + serial);
        using var client = new ControlClient(sock);
        client.WaitForState("Running", Timeout);
        Assert.True(WaitForFile(serial, t => t.Contains("ready"), Timeout), ReadText(serial));
        using var guest = Attach(sock, serial);
        Assert.True(client.AddDisk(disk, $", \"pci\": \"00:03.0\", \"timeout_ms\": 60000").GetProperty("driver_ready").GetBoolean());
        Type(guest, "blk write 0 8 5", "blk: wrote 8");

        // The guest resets the machine: the VMM boots it again with the disk in its slot, found by the boot's PCI scan.
        After(guest, "KvmPS built-in guest v1", () => guest.Send("reboot"));
        Assert.True(WaitForFile(serial, t => Occurrences(t, "ready") >= 2, Timeout), Tail(ReadText(serial)));
        Assert.Equal(2, client.Ok("status").GetProperty("boots").GetInt32());
        Assert.Equal(["00:03.0 block hot"], DescribedDevices(client));
        Assert.True(HasOpen(vmm, disk));
        Type(guest, "info", "devices=03:1af4:1042\r\n");
        Type(guest, "blk read 0 8", $"blk: crc32 {ExpectedCrc(8, 5)}");
        Assert.Equal("removed", client.Ok("device.remove", "\"pci\": \"00:03.0\", \"timeout_ms\": 60000").GetProperty("state").GetString());
        Assert.False(HasOpen(vmm, disk));
        client.Ok("stop", "\"graceful\": false");
        Assert.Equal(0, vmm.WaitForExit(Timeout));
    }

    [Fact]
    public void BadInputIsRefusedNamingItAndTheMachineStaysAsItWas()
    {
        using var dir = new TempDir();
        string sock = dir.File("c.sock"), disk = MakeDisk(dir, "d.raw"), missing = dir.File("missing.raw");
        // One configured device (rng in 00:01.0): not hot-pluggable.
        using var vmm = new VmmProcess("--control-socket", sock, "--serial", "none", "--device", "rng");
        using var client = new ControlClient(sock);
        client.WaitForState("Running", Timeout);
        Assert.Equal(["00:01.0 rng"], DescribedDevices(client));

        string message(JsonElement reply) => Error(reply, "InvalidArgument").GetProperty("message").GetString()!;
        Assert.Contains(missing, message(client.Request("device.add", $"\"device\": {{\"type\": \"block\", \"path\": \"{missing}\"}}")));
        Assert.Contains("cannot be hot-plugged", message(client.Request("device.add", "\"device\": {\"type\": \"rng\"}")));
        Assert.Contains("00:01.0 is not a hot-plug slot", message(client.Request("device.add", $"\"device\": {{\"type\": \"block\", \"path\": \"{disk}\"}}, \"pci\": \"00:01.0\"")));
        Assert.Contains("'00:20.0'", message(client.Request("device.add", $"\"device\": {{\"type\": \"block\", \"path\": \"{disk}\"}}, \"pci\": \"00:20.0\"")));
        Assert.Contains("timeout_ms", message(client.Request("device.add", $"\"device\": {{\"type\": \"block\", \"path\": \"{disk}\"}}, \"timeout_ms\": 600001")));
        Assert.Equal(["00:01.0 rng"], DescribedDevices(client));

        var added = client.Ok("device.add", $"\"device\": {{\"type\": \"block\", \"path\": \"{disk}\", \"read_only\": true}}, \"pci\": \"00:05.0\"");
        Assert.Equal("00:05.0", added.GetProperty("device").GetProperty("pci").GetString());
        Assert.False(added.GetProperty("timed_out").GetBoolean()); // no wait asked for
        string other = MakeDisk(dir, "e.raw");
        Assert.Contains("00:05.0 is taken", message(client.Request("device.add", $"\"device\": {{\"type\": \"block\", \"path\": \"{other}\"}}, \"pci\": \"00:05.0\"")));
        Assert.Contains("cold-plugged", message(client.Request("device.remove", "\"pci\": \"00:01.0\"")));
        Assert.Contains("no hot-plugged device at PCI address 00:09.0", message(client.Request("device.remove", "\"pci\": \"00:09.0\"")));
        Assert.Contains("'slot7'", message(client.Request("device.remove", "\"pci\": \"slot7\"")));
        Assert.Equal(["00:01.0 rng", "00:05.0 block hot"], DescribedDevices(client));
        Assert.Equal("Running", client.Ok("status").GetProperty("state").GetString());
        client.Ok("stop", "\"graceful\": false");
        Assert.Equal(0, vmm.WaitForExit(Timeout));
    }

    [Fact]
    public void AGuestThatNeverEjectsLeavesTheDiskPresentAndWorkingAndTheRemovalTimesOut()
    {
        using var dir = new TempDir();
        string sock = dir.File("c.sock"), serial = dir.File("serial.log"), disk = MakeDisk(dir, "d.raw");
        // kvmps.nosci: the guest takes no ACPI event, as an OS without PCI hot-plug support.
        using var vmm = new VmmProcess("--control-socket", sock, "--serial", "file:" + serial, "--cmdline", "kvmps.nosci");
        using var client = new ControlClient(sock);
        client.WaitForState("Running", Timeout);
        Assert.True(WaitForFile(serial, t => t.Contains("ready"), Timeout), ReadText(serial));

        var added = client.AddDisk(disk, $", \"timeout_ms\": 1500");
        Assert.True(added.GetProperty("timed_out").GetBoolean());
        Assert.False(added.GetProperty("driver_ready").GetBoolean());

        var removing = client.Ok("device.remove", "\"pci\": \"00:01.0\", \"timeout_ms\": 1500");
        Assert.Equal("removing", removing.GetProperty("state").GetString());
        Assert.True(removing.GetProperty("timed_out").GetBoolean());
        // Nothing was torn down under the guest: the disk is listed, open, and works.
        Assert.Equal(["00:01.0 block hot"], DescribedDevices(client));
        Assert.True(HasOpen(vmm, disk));
        using var guest = Attach(sock, serial);
        Type(guest, "blk write 8 16 3", "blk: wrote 16");
        Type(guest, "blk read 8 16", $"blk: crc32 {ExpectedCrc(16, 3)}");
        // Asking again is allowed and still waits for the guest.
        Assert.Equal("removing", client.Ok("device.remove", "\"pci\": \"00:01.0\"").GetProperty("state").GetString());
        client.Ok("stop", "\"graceful\": false");
        Assert.Equal(0, vmm.WaitForExit(Timeout));
    }

    [Fact]
    public void ASnapshotAfterAHotAddRestoresWithTheDiskInItsSlot()
    {
        using var dir = new TempDir();
        string sock = dir.File("a.sock"), serial = dir.File("a.log"), disk = MakeDisk(dir, "d.raw"), snapshot = dir.File("snap");
        string crc = ExpectedCrc(32, 11);
        using (var vmm = new VmmProcess("--control-socket", sock, "--serial", "file:" + serial))
        {
            using var client = new ControlClient(sock);
            client.WaitForState("Running", Timeout);
            Assert.True(WaitForFile(serial, t => t.Contains("ready"), Timeout), ReadText(serial));
            using var guest = Attach(sock, serial);
            var added = client.AddDisk(disk, $", \"pci\": \"00:04.0\", \"timeout_ms\": 60000");
            Assert.True(added.GetProperty("driver_ready").GetBoolean());
            Type(guest, "blk write 0 32 11", "blk: wrote 32");
            // A raw disk has no internal snapshots: the snapshot leaves the disk out (it moves on with the guest).
            client.Ok("snapshot.create", $"\"path\": \"{snapshot}\", \"resume\": false, \"disks\": \"ignore\"");
            vmm.Signal(9);
            vmm.WaitForExit(Timeout);
        }

        string sock2 = dir.File("b.sock"), serial2 = dir.File("b.log");
        using var restored = new VmmProcess("--restore", snapshot, "--serial", "file:" + serial2, "--control-socket", sock2);
        using var client2 = new ControlClient(sock2);
        client2.WaitForState("Running", Timeout);
        Assert.Equal(["00:04.0 block hot"], DescribedDevices(client2));
        Assert.True(HasOpen(restored, disk));
        using var guest2 = Attach(sock2, serial2);
        // The restored guest's driver goes on with the device it had.
        Type(guest2, "blk read 0 32", $"blk: crc32 {crc}");
        Type(guest2, "info", "devices=04:1af4:1042\r\n");
        var removed = client2.Ok("device.remove", "\"pci\": \"00:04.0\", \"timeout_ms\": 60000");
        Assert.Equal("removed", removed.GetProperty("state").GetString());
        Assert.False(HasOpen(restored, disk));
        client2.Ok("stop", "\"graceful\": false");
        Assert.Equal(0, restored.WaitForExit(Timeout));
    }
}
