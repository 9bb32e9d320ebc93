using System.IO.Pipes;
using System.Text;
using System.Text.Json;
using KvmPS.Engine.Tests.Acpi;
using KvmPS.Engine.Tests.Devices.Cdrom;
using KvmPS.Engine.Tests.Support;
using Xunit.Abstractions;
using static KvmPS.Engine.Tests.State.WorkloadConsole;

namespace KvmPS.Engine.Tests.Sandbox;

/// <summary>
/// A jailed kvmps-vmm (docs/confinement.md, "The jail") takes a CD/DVD medium it cannot open itself as an open file:
/// an ISO only root may read, outside the jail's private root, is inserted by passing it with media.change (SCM_RIGHTS,
/// docs/vmm.md "Passing open files") and stays in the drive across a guest reboot. What is not a regular file open
/// read-only is refused naming it, and closed.
/// </summary>
[Collection("vmm-process")]
public class JailMediaChangeTests(ITestOutputHelper log)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);

    private static JsonElement Error(JsonElement reply, string code)
    {
        Assert.False(reply.GetProperty("ok").GetBoolean(), reply.ToString());
        Assert.Equal(code, reply.GetProperty("error").GetProperty("code").GetString());
        return reply.GetProperty("error");
    }

    /// <summary>An ISO only root may read (0600) in <paramref name="images"/>, made root-only (0700): the jail neither sees nor may open it.</summary>
    internal static string RootOnlyIso(TempDir images)
    {
        File.SetUnixFileMode(images.Path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        string iso = TestIso.Write(images.File("root-only.iso"), blocks: 40);
        File.SetUnixFileMode(iso, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        return iso;
    }

    private static string Message(JsonElement reply) => Error(reply, "InvalidArgument").GetProperty("message").GetString()!;

    [Fact]
    public void ARootOnlyIsoPassedByFileIsInsertedIntoAJailedVmmAndStaysAcrossAGuestReboot()
    {
        Assert.Equal(0u, KvmPS.Interop.Libc.GetEuid()); // the jail is set up by root
        using var dir = JailPassedFilesTests.VmFolder();
        // The ISO: root's, 0600, in a root-only folder outside the VM folder; the jail neither sees nor may open it.
        using var images = new TempDir();
        string iso = RootOnlyIso(images);
        string sock = dir.File("c.sock"), serial = dir.File("serial.log");
        using var vmm = new VmmProcess("--jail", "on", "--user", JailPassedFilesTests.JailUser, "--control-socket", sock, "--serial", "file:" + serial, "--device", "cdrom");
        using var client = new ControlClient(sock);
        client.WaitForState("Running", Timeout);
        Assert.True(WaitForFile(serial, t => t.Contains("ready"), Timeout), ReadText(serial) + vmm.Stderr);
        string pci = client.Ok("describe").GetProperty("devices").EnumerateArray().Single(d => d.GetProperty("type").GetString() == "cdrom").GetProperty("pci").GetString()!;
        string insert = $"\"pci\": \"{pci}\", \"path\": \"{iso}\"";

        // By path, the jailed VMM cannot open it.
        Assert.Contains(iso, Message(client.Request("media.change", insert)));

        // A pipe is refused naming the ISO and what came instead; the VMM closes it (the writer sees no reader).
        using (var pipe = new AnonymousPipeServerStream(PipeDirection.In))
        {
            string refused = Message(client.RequestWithFiles("media.change", insert + ", \"passed_files\": 1", [pipe.ClientSafePipeHandle]));
            pipe.DisposeLocalCopyOfClientHandle();
            Assert.Contains($"the file passed for the ISO image '{iso}' is a pipe, not a regular file", refused);
            Assert.True(Task.Run(() => pipe.Read(new byte[1])).Wait(TimeSpan.FromSeconds(5)), "the VMM kept the refused pipe open");
        }
        // A directory, two files, a file open for writing, a file with an eject: each refused, the drive stays empty.
        // File.OpenHandle refuses a directory: open(2) it read-only, as a careless sender could.
        using (var folder = new Microsoft.Win32.SafeHandles.SafeFileHandle(KvmPS.Interop.Libc.Open(images.Path, KvmPS.Interop.Libc.O_RDONLY | KvmPS.Interop.Libc.O_CLOEXEC, 0), ownsHandle: true))
            Assert.Contains("is a directory, not a regular file", Message(client.RequestWithFiles("media.change", insert + ", \"passed_files\": 1", [folder])));
        using (var one = File.OpenHandle(iso, FileMode.Open, FileAccess.Read))
        using (var two = File.OpenHandle(iso, FileMode.Open, FileAccess.Read))
        {
            Assert.Contains("takes one passed file (the ISO), but 2 came", Message(client.RequestWithFiles("media.change", insert + ", \"passed_files\": 2", [one, two])));
            Assert.Contains("ejecting (no \"path\") takes no passed file", Message(client.RequestWithFiles("media.change", $"\"pci\": \"{pci}\", \"passed_files\": 1", [one])));
        }
        using (var writable = File.OpenHandle(iso, FileMode.Open, FileAccess.ReadWrite))
            Assert.Contains("is open for writing", Message(client.RequestWithFiles("media.change", insert + ", \"passed_files\": 1", [writable])));
        Assert.False(BuiltInGuestPciHotplugTests.HasOpen(vmm, iso), "a refused file stayed open in the VMM");
        Assert.False(Drive(client).TryGetProperty("path", out _));

        // Opened here (root, read-only) and passed: inserted; the path is what is reported.
        using (var medium = File.OpenHandle(iso, FileMode.Open, FileAccess.Read))
        {
            var inserted = client.RequestWithFiles("media.change", insert + ", \"passed_files\": 1", [medium]);
            Assert.True(inserted.GetProperty("ok").GetBoolean(), inserted.ToString());
            Assert.Equal(iso, inserted.GetProperty("result").GetProperty("path").GetString());
            Assert.Equal(40 * 2048, inserted.GetProperty("result").GetProperty("size_bytes").GetInt64());
        }
        Assert.True(BuiltInGuestPciHotplugTests.HasOpen(vmm, iso));
        Assert.Equal(iso, Drive(client).GetProperty("path").GetString());

        // A guest reboot: the new drive takes the open medium (the jail could not open the path again).
        using var console = new ControlClient(sock);
        Assert.True(console.Ok("console.attach", "\"replay\": false").GetProperty("attached").GetBoolean());
        log.WriteLine("> reboot");
        console.Stream.Write(Encoding.ASCII.GetBytes("reboot\r"));
        Assert.True(WaitForFile(serial, t => Occurrences(t, "ready") >= 2, Timeout), ReadText(serial) + vmm.Stderr);
        Assert.Equal(2, client.Ok("status").GetProperty("boots").GetInt32());
        Assert.DoesNotContain("the drive is empty after the reboot", vmm.Stderr);
        Assert.Equal(iso, Drive(client).GetProperty("path").GetString());
        Assert.True(BuiltInGuestPciHotplugTests.HasOpen(vmm, iso));

        // Ejecting passes nothing and closes the medium.
        Assert.Equal(0, client.Ok("media.change", $"\"pci\": \"{pci}\"").GetProperty("size_bytes").GetInt64());
        Assert.False(BuiltInGuestPciHotplugTests.HasOpen(vmm, iso));
        client.Ok("stop", "\"graceful\": false");
        Assert.Equal(0, vmm.WaitForExit(Timeout));
    }

    private static JsonElement Drive(ControlClient client) =>
        client.Ok("describe").GetProperty("devices").EnumerateArray().Single(d => d.GetProperty("type").GetString() == "cdrom");
}
