using System.IO.Pipes;
using System.Text;
using System.Text.Json;
using KvmPS.Engine.Tests.Acpi;
using KvmPS.Engine.Tests.Devices;
using KvmPS.Engine.Tests.Support;
using Xunit.Abstractions;
using static KvmPS.Engine.Tests.State.WorkloadConsole;

namespace KvmPS.Engine.Tests.Sandbox;

/// <summary>
/// A jailed kvmps-vmm (docs/confinement.md, "The jail") gets what it cannot open itself as open files: a disk image
/// only root may read, outside the jail's private root, is hot-plugged by passing it with device.add (SCM_RIGHTS,
/// docs/vmm.md "Passing open files"), and stays open across a guest reboot; a tap the VMM made stays across a reboot
/// too, though making it again would need CAP_NET_ADMIN. Jailed as <c>KVMPS_TEST_JAIL</c>'s user, else nobody.
/// </summary>
[Collection("vmm-process")]
public class JailPassedFilesTests(ITestOutputHelper log)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);
    internal static string JailUser => VmmProcess.JailedAs ?? "65534:65534";

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "chown", SetLastError = true)]
    private static extern int Chown(string path, uint uid, uint gid);

    /// <summary>The VM folder, the jail user's (as management gives it).</summary>
    internal static TempDir VmFolder()
    {
        var dir = new TempDir();
        File.SetUnixFileMode(dir.Path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var ids = JailUser.Split(':').Select(uint.Parse).ToArray();
        Assert.Equal(0, Chown(dir.Path, ids[0], ids[1]));
        return dir;
    }

    private static JsonElement Error(JsonElement reply, string code)
    {
        Assert.False(reply.GetProperty("ok").GetBoolean(), reply.ToString());
        Assert.Equal(code, reply.GetProperty("error").GetProperty("code").GetString());
        return reply.GetProperty("error");
    }

    [Fact]
    public void ARootOnlyImagePassedByFileIsHotPluggedIntoAJailedVmmAndKeptAcrossAGuestReboot()
    {
        Assert.Equal(0u, KvmPS.Interop.Libc.GetEuid()); // the jail is set up by root
        using var dir = VmFolder();
        // The image: root's, 0600, in a root-only folder outside the VM folder; the jail neither sees nor may open it.
        using var images = new TempDir();
        File.SetUnixFileMode(images.Path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        string disk = images.File("root-only.raw");
        using (var f = new FileStream(disk, new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.ReadWrite, UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite }))
            f.SetLength(4 << 20);
        string sock = dir.File("c.sock"), serial = dir.File("serial.log");
        using var vmm = new VmmProcess("--jail", "on", "--user", JailUser, "--control-socket", sock, "--serial", "file:" + serial);
        using var client = new ControlClient(sock);
        client.WaitForState("Running", Timeout);
        Assert.True(WaitForFile(serial, t => t.Contains("ready"), Timeout), ReadText(serial) + vmm.Stderr);
        // Jailed: the VMM runs as the jail's user (its uid in /proc/PID/status).
        Assert.Equal(JailUser.Split(':')[0], File.ReadAllLines($"/proc/{vmm.Pid}/status").First(l => l.StartsWith("Uid:", StringComparison.Ordinal)).Split('\t')[1]);
        string spec = $"\"device\": {{\"type\": \"block\", \"path\": \"{disk}\"}}, \"pci\": \"00:03.0\"";

        // By path, the jailed VMM cannot open it (what made management chown images before).
        Assert.Contains(disk, Error(client.Request("device.add", spec), "InvalidArgument").GetProperty("message").GetString());

        // A file that is not the image (a pipe) is refused naming the disk; nothing is plugged, and the file is closed.
        using (var pipe = new AnonymousPipeServerStream(PipeDirection.In))
        {
            var bad = client.RequestWithFiles("device.add", spec + ", \"passed_files\": 1", [pipe.ClientSafePipeHandle]);
            pipe.DisposeLocalCopyOfClientHandle();
            Assert.Contains(disk, Error(bad, "InvalidArgument").GetProperty("message").GetString());
            Assert.True(Task.Run(() => pipe.Read(new byte[1])).Wait(TimeSpan.FromSeconds(5)), "the VMM kept the refused file open");
        }
        Assert.Empty(client.Ok("describe").GetProperty("devices").EnumerateArray());

        // Opened here (root) and passed: plugged, written and read by the guest.
        using (var image = File.OpenHandle(disk, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite))
        {
            var added = client.RequestWithFiles("device.add", spec + ", \"timeout_ms\": 60000, \"passed_files\": 1", [image]);
            Assert.True(added.GetProperty("ok").GetBoolean(), added.ToString());
            Assert.True(added.GetProperty("result").GetProperty("driver_ready").GetBoolean());
            Assert.Equal(disk, added.GetProperty("result").GetProperty("device").GetProperty("path").GetString());
        }
        using var console = new ControlClient(sock);
        Assert.True(console.Ok("console.attach", "\"replay\": false").GetProperty("attached").GetBoolean());
        void Type(string command, string expect)
        {
            int before = Occurrences(ReadText(serial), expect);
            log.WriteLine($"> {command}");
            console.Stream.Write(Encoding.ASCII.GetBytes(command + "\r"));
            Assert.True(WaitForFile(serial, t => Occurrences(t, expect) > before, Timeout), $"no '{expect}':\n{ReadText(serial)}\n{vmm.Stderr}");
        }
        Type("blk write 0 8 7", "blk: wrote 8");

        // A guest reboot: the new machine takes the open image (the jail could not open it again), in its slot.
        Type("reboot", "KvmPS built-in guest v1");
        Assert.True(WaitForFile(serial, t => Occurrences(t, "ready") >= 2, Timeout), ReadText(serial) + vmm.Stderr);
        Assert.Equal(2, client.Ok("status").GetProperty("boots").GetInt32());
        Assert.DoesNotContain("dropped at the reboot", vmm.Stderr);
        Assert.True(BuiltInGuestPciHotplugTests.HasOpen(vmm, disk));
        Type("blk read 0 8", $"blk: crc32 {BuiltInGuestPciHotplugTests.ExpectedCrc(8, 7)}");
        Assert.Equal("removed", client.Ok("device.remove", "\"pci\": \"00:03.0\", \"timeout_ms\": 60000").GetProperty("state").GetString());
        Assert.False(BuiltInGuestPciHotplugTests.HasOpen(vmm, disk));
        client.Ok("stop", "\"graceful\": false");
        Assert.Equal(0, vmm.WaitForExit(Timeout));
    }

    /// <summary>
    /// The guest answers 3 pings, reboots, and answers again: the tap the VMM made as root before the jail is kept
    /// open through the reboot (closing it would delete it, and the jailed VMM may not make it again).
    /// </summary>
    [NetNsFact(needsPing: true)]
    public void AJailedVmmKeepsItsTapAcrossAGuestReboot()
    {
        using var ns = new NetNs();
        using var dir = VmFolder();
        ns.Ip("link", "add", "kvtbr0", "type", "bridge");
        ns.Ip("link", "set", "kvtbr0", "up");
        ns.Ip("addr", "add", "10.99.0.1/24", "dev", "kvtbr0");
        using var vmm = new VmmProcess(["--jail", "on", "--user", JailUser, "--device", "net,tap=kvt0,bridge=kvtbr0,mac=52:54:00:aa:bb:03",
            "--cmdline", "kvmps.run=net ip 10.99.0.2,net serve 3 300,reboot"], redirectStdin: false, netns: ns.Name);
        Assert.True(vmm.WaitForStdout("net: serving", Timeout), vmm.Stdout + vmm.Stderr);
        string before = ns.Ip("-o", "link", "show", "kvt0");
        var first = ns.Exec(Timeout, "ping", "-c", "3", "-W", "5", "10.99.0.2");
        Assert.True(first.Code == 0, first.Output + vmm.Stdout + vmm.Stderr);
        // Three answers and the guest reboots; the new boot serves again on the same interface, still in its bridge.
        var deadline = DateTime.UtcNow + Timeout;
        while (Occurrences(vmm.Stdout, "net: serving") < 2 && !vmm.HasExited && DateTime.UtcNow < deadline) Thread.Sleep(50);
        Assert.True(Occurrences(vmm.Stdout, "net: serving") >= 2, vmm.Stdout + vmm.Stderr);
        string after = ns.Ip("-o", "link", "show", "kvt0");
        Assert.Equal(before.Split(':')[0], after.Split(':')[0]); // the same ifindex: not made again
        Assert.Contains("master kvtbr0", after);
        var second = ns.Exec(Timeout, "ping", "-c", "3", "-W", "5", "10.99.0.2");
        Assert.True(second.Code == 0, second.Output + vmm.Stdout + vmm.Stderr);
        log.WriteLine(vmm.Stderr);
    }
}
