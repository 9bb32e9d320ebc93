using System.Text.Json;
using KvmPS.Engine.Tests.Acpi;
using KvmPS.Engine.Tests.Devices.Cdrom;
using KvmPS.Engine.Tests.Support;
using static KvmPS.Engine.Tests.State.WorkloadConsole;

namespace KvmPS.Engine.Tests.Sandbox;

/// <summary>
/// A drive medium a jailed kvmps-vmm could not open itself (root's, 0600, outside the jail; inserted at run time by
/// passing it with media.change) comes back in a jailed VMM that restores a snapshot of the VM or receives it by live
/// migration: those VMMs build the machine as root, before they jail (docs/confinement.md, "The jail"), so they open
/// the medium the snapshot or stream names as they open its disks, and keep it open in the jail, across a guest reboot too.
/// </summary>
[Collection("vmm-process")]
public class JailMediaRestoreTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);

    private static string[] Jail => ["--jail", "on", "--user", JailPassedFilesTests.JailUser];

    private static JsonElement Drive(ControlClient client) =>
        client.Ok("describe").GetProperty("devices").EnumerateArray().Single(d => d.GetProperty("type").GetString() == "cdrom");

    /// <summary>The drive holds <paramref name="iso"/>: described, open in the VMM, and the jailed VMM could not open it by path.</summary>
    private static void AssertHolds(VmmProcess vmm, ControlClient client, string iso)
    {
        Assert.Equal(iso, Drive(client).GetProperty("path").GetString());
        Assert.True(BuiltInGuestPciHotplugTests.HasOpen(vmm, iso), vmm.Stderr);
        Assert.NotEqual("0", File.ReadAllLines($"/proc/{vmm.Pid}/status").First(l => l.StartsWith("Uid:", StringComparison.Ordinal)).Split('\t')[1]);
    }

    [Fact]
    public void ARootOnlyMediumChangedAtRunTimeIsInTheDriveOfAJailedRestoreAndOfAJailedReceiver()
    {
        Assert.Equal(0u, KvmPS.Interop.Libc.GetEuid()); // the jail is set up by root
        using var dir = JailPassedFilesTests.VmFolder();
        using var images = new TempDir();
        string iso = JailMediaChangeTests.RootOnlyIso(images);
        string snapshot = dir.File("snap");

        // 1. A jailed VMM with an empty drive gets the ISO passed, and a snapshot is taken.
        string sock = dir.File("c.sock"), serial = dir.File("serial.log");
        using (var vmm = new VmmProcess([.. Jail, "--control-socket", sock, "--serial", "file:" + serial, "--device", "cdrom"]))
        using (var client = new ControlClient(sock))
        {
            client.WaitForState("Running", Timeout);
            Assert.True(WaitForFile(serial, t => t.Contains("ready"), Timeout), ReadText(serial) + vmm.Stderr);
            string pci = Drive(client).GetProperty("pci").GetString()!;
            using (var medium = File.OpenHandle(iso, FileMode.Open, FileAccess.Read))
            {
                var inserted = client.RequestWithFiles("media.change", $"\"pci\": \"{pci}\", \"path\": \"{iso}\", \"passed_files\": 1", [medium]);
                Assert.True(inserted.GetProperty("ok").GetBoolean(), inserted.ToString());
            }
            client.Ok("snapshot.create", $"\"path\": \"{snapshot}\", \"disks\": \"ignore\"");
            client.Ok("stop", "\"graceful\": false");
            Assert.Equal(0, vmm.WaitForExit(Timeout));
        }

        // 2. A jailed restore: the medium the snapshot names is in the drive, open.
        string restoredSock = dir.File("r.sock"), restoredSerial = dir.File("r.log");
        using var restored = new VmmProcess([.. Jail, "--restore", snapshot, "--control-socket", restoredSock, "--serial", "file:" + restoredSerial]);
        using var restoredClient = new ControlClient(restoredSock);
        restoredClient.WaitForState("Running", Timeout);
        AssertHolds(restored, restoredClient, iso);
        // A guest reboot after the restore keeps it (the restored drive's medium is the one the next boot takes open).
        using (var console = new ControlClient(restoredSock))
        {
            Assert.True(console.Ok("console.attach", "\"replay\": false").GetProperty("attached").GetBoolean());
            console.Stream.Write(System.Text.Encoding.ASCII.GetBytes("reboot\r"));
            Assert.True(WaitForFile(restoredSerial, t => t.Contains("ready"), Timeout), ReadText(restoredSerial) + restored.Stderr);
        }
        Assert.Equal(2, restoredClient.Ok("status").GetProperty("boots").GetInt32());
        Assert.DoesNotContain("the drive is empty after the reboot", restored.Stderr);
        AssertHolds(restored, restoredClient, iso);

        // 3. From the restored VMM to a jailed receiver over a Unix socket in the VM folder: the medium is there too.
        string uri = "unix:" + dir.File("in.sock"), receiverSock = dir.File("d.sock");
        using var receiver = new VmmProcess([.. Jail, "--incoming", uri, "--device", "cdrom", "--control-socket", receiverSock, "--serial", "file:" + dir.File("d.log")]);
        var deadline = DateTime.UtcNow + Timeout;
        while (!receiver.Stderr.Contains("waiting for a migration stream") && DateTime.UtcNow < deadline && !receiver.HasExited) Thread.Sleep(10);
        restoredClient.Ok("migrate", $"\"uri\": \"{uri}\"");
        Assert.Equal(KvmPS.Contract.VmmExitCode.Migrated, restored.WaitForExit(Timeout));
        using var receiverClient = new ControlClient(receiverSock);
        receiverClient.WaitForState("Running", Timeout);
        AssertHolds(receiver, receiverClient, iso);
        receiverClient.Ok("stop", "\"graceful\": false");
        Assert.Equal(0, receiver.WaitForExit(Timeout));
        Assert.DoesNotContain("sandbox violation", restored.Stderr + receiver.Stderr);
    }
}
