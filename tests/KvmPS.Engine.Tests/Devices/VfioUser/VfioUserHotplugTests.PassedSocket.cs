using System.IO.Pipes;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using KvmPS.Engine.Tests.Sandbox;
using KvmPS.Engine.Tests.Support;
using KvmPS.Interop;
using static KvmPS.Engine.Tests.State.WorkloadConsole;

namespace KvmPS.Engine.Tests.Devices.VfioUser;

/// <summary>
/// A vfio-user device hot-plugged with its socket passed open (device.add with passed_files, SCM_RIGHTS; docs/vmm.md
/// "Passing open files"), as management passes it: connected by the sender, used by the VMM instead of its path, which a
/// jailed VMM may not reach. A file that is not a connected Unix stream socket is refused naming it, and closed.
/// </summary>
public partial class VfioUserHotplugTests
{
    private static string PassedSpec(string socket, string slot) => AddSpec(socket) + $", \"pci\": \"{slot}\", \"passed_files\": 1";

    private static int Connections(VfioUserTestServer server) => Regex.Matches(server.Stderr, "client connected").Count;

    /// <summary>
    /// The server's socket is root's in a 0700 folder: the jailed VMM cannot connect to it by path, but takes the socket
    /// connected here; the guest runs DMA through it, and the eject closes it (the server sees the disconnect).
    /// </summary>
    [Fact]
    public void AJailedVmmHotPlugsAVfioUserDeviceWhoseSocketIsPassedOpenAndRefusesOtherFiles()
    {
        Assert.Equal(0u, Libc.GetEuid()); // the jail is set up by root
        using var dir = JailPassedFilesTests.VmFolder();
        using var server = new VfioUserTestServer();
        string sock = dir.File("c.sock"), serial = dir.File("serial.log");
        using var vmm = new VmmProcess("--jail", "on", "--user", JailPassedFilesTests.JailUser, "--control-socket", sock, "--serial", "file:" + serial, "--memfd", "on");
        try
        {
            using var client = new ControlClient(sock);
            client.WaitForState("Running", Timeout);
            Assert.True(WaitForFile(serial, t => t.Contains("ready"), Timeout), ReadText(serial) + vmm.Stderr);
            Assert.Equal(JailPassedFilesTests.JailUser.Split(':')[0], File.ReadAllLines($"/proc/{vmm.Pid}/status").First(l => l.StartsWith("Uid:", StringComparison.Ordinal)).Split('\t')[1]);

            // By path, the jailed VMM cannot connect (what management's passing is for).
            string message = Error(client.Request("device.add", AddSpec(server.SocketPath)), "InvalidArgument");
            Assert.Contains(server.SocketPath, message);
            Assert.Contains("cannot connect", message);

            // A pipe: refused naming the socket and what came; the VMM closed it (the read end sees the end of file).
            using (var pipe = new AnonymousPipeServerStream(PipeDirection.In))
            {
                var bad = client.RequestWithFiles("device.add", PassedSpec(server.SocketPath, "00:05.0"), [pipe.ClientSafePipeHandle]);
                pipe.DisposeLocalCopyOfClientHandle();
                message = Error(bad, "InvalidArgument");
                Assert.Contains(server.SocketPath, message);
                Assert.Contains("a pipe", message);
                Assert.True(Task.Run(() => pipe.Read(new byte[1])).Wait(TimeSpan.FromSeconds(5)), "the VMM kept the refused pipe open");
            }
            // A Unix stream socket that is not connected: refused the same way.
            using (var unconnected = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
            {
                message = Error(client.RequestWithFiles("device.add", PassedSpec(server.SocketPath, "00:05.0"), [unconnected.SafeHandle]), "InvalidArgument");
                Assert.Contains(server.SocketPath, message);
                Assert.Contains("not connected", message);
            }
            Assert.Empty(DescribedDevices(client));
            Assert.Equal(0, Connections(server));

            // Connected here (root) and passed: plugged; the path stays the device's name.
            int socketsBefore = OpenSockets(vmm);
            using (var connection = UnixStreamSockets.Connect(server.SocketPath))
            {
                var added = client.RequestWithFiles("device.add", PassedSpec(server.SocketPath, "00:05.0"), [connection]);
                Assert.True(added.GetProperty("ok").GetBoolean(), added.ToString() + vmm.Stderr);
                Assert.Equal(server.SocketPath, added.GetProperty("result").GetProperty("device").GetProperty("socket").GetString());
            }
            Assert.True(SpinWait.SpinUntil(() => Connections(server) >= 1, 10000), server.Stderr);
            Assert.Equal(socketsBefore + 1, OpenSockets(vmm));
            Assert.True(WaitForFile(serial, t => t.Contains("pci: slot 05 added 1b36:7f5e"), Timeout), Tail(ReadText(serial)));
            Assert.Equal(["00:05.0 vfio-user hot"], DescribedDevices(client));
            using (var guest = Attach(sock, serial))
                Assert.Contains("vfu: test rounds=4 ok=4 irqs=4 completed=4", Type(guest, "vfu test 4", "vfu: test rounds=4"));

            // The eject closes the connection (ours was closed after the add: the server sees the VMM's go).
            Assert.Equal("removed", client.Ok("device.remove", "\"pci\": \"00:05.0\", \"timeout_ms\": 60000").GetProperty("state").GetString());
            Assert.True(SpinWait.SpinUntil(() => server.Stderr.Contains("client closed the connection"), 10000), server.Stderr);
            Assert.Equal(socketsBefore, OpenSockets(vmm));
            Assert.Equal(1, Connections(server)); // the passed connection only: the VMM never connected by path
            Assert.Equal("Running", client.Ok("status").GetProperty("state").GetString());
            client.Ok("stop", "\"graceful\": false");
            Assert.Equal(0, vmm.WaitForExit(Timeout));
        }
        finally
        {
            log.WriteLine("serial:\n" + Tail(ReadText(serial)));
            log.WriteLine("stderr:\n" + vmm.Stderr);
            log.WriteLine("server:\n" + server.Stderr);
        }
    }

    /// <summary>
    /// A guest reboot keeps the passed connection (it has no path the jailed VMM could connect to): the device is reset
    /// over it, plugged back in its slot before the boot, and runs DMA into the new boot's RAM.
    /// </summary>
    [Fact]
    public void AJailedVmmKeepsAPassedVfioUserConnectionAcrossAGuestReboot()
    {
        Assert.Equal(0u, Libc.GetEuid()); // the jail is set up by root
        using var dir = JailPassedFilesTests.VmFolder();
        using var server = new VfioUserTestServer();
        string sock = dir.File("c.sock"), serial = dir.File("serial.log");
        using var vmm = new VmmProcess("--jail", "on", "--user", JailPassedFilesTests.JailUser, "--control-socket", sock, "--serial", "file:" + serial, "--memfd", "on");
        try
        {
            using var client = new ControlClient(sock);
            client.WaitForState("Running", Timeout);
            Assert.True(WaitForFile(serial, t => t.Contains("ready"), Timeout), ReadText(serial) + vmm.Stderr);
            using (var connection = UnixStreamSockets.Connect(server.SocketPath))
            {
                var added = client.RequestWithFiles("device.add", PassedSpec(server.SocketPath, "00:06.0"), [connection]);
                Assert.True(added.GetProperty("ok").GetBoolean(), added.ToString() + vmm.Stderr);
            }
            Assert.True(WaitForFile(serial, t => t.Contains("pci: slot 06 added 1b36:7f5e"), Timeout), Tail(ReadText(serial)));
            using var guest = Attach(sock, serial);
            Type(guest, "vfu scratch c0ffee", "vfu: scratch=");
            Assert.Contains("vfu: test rounds=2 ok=2 irqs=2 completed=2", Type(guest, "vfu test 2", "vfu: test rounds=2"));

            Type(guest, "reboot", "KvmPS built-in guest v1");
            Assert.True(WaitForFile(serial, t => Occurrences(t, "ready") >= 2, Timeout), Tail(ReadText(serial)) + vmm.Stderr);
            Assert.Equal(2, client.Ok("status").GetProperty("boots").GetInt32());
            Assert.Equal(["00:06.0 vfio-user hot"], DescribedDevices(client));
            // Reset over the kept connection: the scratch register is clear, the device counts its second reset.
            Assert.Matches(@"vfu: magic=0x30554656 version=1 completed=0 irqs=0 resets=2 scratch=0x00000000", Type(guest, "vfu info", "resets="));
            Assert.Contains("vfu: test rounds=3 ok=3 irqs=3 completed=3", Type(guest, "vfu test 3", "vfu: test rounds=3"));
            Assert.Equal(1, Connections(server));
            Assert.DoesNotContain("client closed the connection", server.Stderr);
            Assert.DoesNotContain("dropped at the reboot", vmm.Stderr);
            client.Ok("stop", "\"graceful\": false");
            Assert.Equal(0, vmm.WaitForExit(Timeout));
        }
        finally
        {
            log.WriteLine("serial:\n" + Tail(ReadText(serial)));
            log.WriteLine("stderr:\n" + vmm.Stderr);
            log.WriteLine("server:\n" + server.Stderr);
        }
    }

    /// <summary>The socket file is gone once the connection is made: the VMM uses the passed connection, never the path.</summary>
    [Fact]
    public void APassedVfioUserSocketIsUsedInsteadOfItsPathWhichNeedNotExist()
    {
        using var dir = new TempDir();
        using var server = new VfioUserTestServer();
        string sock = dir.File("c.sock"), serial = dir.File("serial.log");
        using var vmm = new VmmProcess("--control-socket", sock, "--serial", "file:" + serial, "--memfd", "on");
        try
        {
            using var client = new ControlClient(sock);
            client.WaitForState("Running", Timeout);
            Assert.True(WaitForFile(serial, t => t.Contains("ready"), Timeout), ReadText(serial));
            using (var connection = UnixStreamSockets.Connect(server.SocketPath))
            {
                File.Delete(server.SocketPath); // the server keeps serving the connection it accepted
                var added = client.RequestWithFiles("device.add", PassedSpec(server.SocketPath, "00:03.0") + ", \"timeout_ms\": 0", [connection]);
                Assert.True(added.GetProperty("ok").GetBoolean(), added.ToString() + vmm.Stderr);
                Assert.Equal(server.SocketPath, added.GetProperty("result").GetProperty("device").GetProperty("socket").GetString());
            }
            Assert.True(WaitForFile(serial, t => t.Contains("pci: slot 03 added 1b36:7f5e"), Timeout), Tail(ReadText(serial)));
            using (var guest = Attach(sock, serial))
                Assert.Contains("vfu: test rounds=2 ok=2 irqs=2 completed=2", Type(guest, "vfu test 2", "vfu: test rounds=2"));
            Assert.Equal("removed", client.Ok("device.remove", "\"pci\": \"00:03.0\", \"timeout_ms\": 60000").GetProperty("state").GetString());
            Assert.True(SpinWait.SpinUntil(() => server.Stderr.Contains("client closed the connection"), 10000), server.Stderr);
            client.Ok("stop", "\"graceful\": false");
            Assert.Equal(0, vmm.WaitForExit(Timeout));
        }
        finally
        {
            log.WriteLine("stderr:\n" + vmm.Stderr);
            log.WriteLine("server:\n" + server.Stderr);
        }
    }
}
