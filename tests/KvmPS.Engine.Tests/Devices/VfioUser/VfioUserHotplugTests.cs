using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using KvmPS.Engine.Tests.Support;
using Xunit.Abstractions;
using static KvmPS.Engine.Tests.State.WorkloadConsole;

namespace KvmPS.Engine.Tests.Devices.VfioUser;

/// <summary>
/// ACPI PCI hot-plug of a vfio-user device into the running built-in guest (device.add / device.remove) against the
/// project's test device server: the guest's SCI handler scans the slot on GPE 1, its <c>vfu</c> commands find the
/// device and run DMA round trips with MSI-X; on an eject request the guest ejects the slot and the VMM closes the
/// connection (the server sees it). Bad input is refused naming it, and the VM runs on.
/// </summary>
[Collection("vmm-process")]
public partial class VfioUserHotplugTests(ITestOutputHelper log)
{
    /// <summary>
    /// These tests plug by path (the VMM connects to the server), which a jailed VMM may not do to a root-owned socket,
    /// by design: they run unjailed; the passed-socket tests (VfioUserHotplugTests.PassedSocket.cs) cover the jail.
    /// </summary>
    private const bool PlugsByPath = true;

    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(120);

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

    private static string Tail(string text) => text.Length > 4000 ? text[^4000..] : text;

    /// <summary>Types <paramref name="command"/> and waits until the serial log has one more <paramref name="expect"/>.</summary>
    private string Type(Guest guest, string command, string expect)
    {
        int before = Occurrences(ReadText(guest.Serial), expect);
        log.WriteLine($"> {command}");
        guest.Send(command);
        // The whole line that holds it: a check of the rest of that line must not read it half written.
        Assert.True(WaitForFile(guest.Serial, t => Occurrences(t, expect) > before && t.IndexOf('\n', t.LastIndexOf(expect, StringComparison.Ordinal)) >= 0, Timeout),
            $"no '{expect}' in the guest's output:\n{Tail(ReadText(guest.Serial))}");
        return ReadText(guest.Serial);
    }

    private static string[] DescribedDevices(ControlClient client) =>
        [.. client.Ok("describe").GetProperty("devices").EnumerateArray().Select(d =>
            $"{d.GetProperty("pci").GetString()} {d.GetProperty("type").GetString()}{(d.GetProperty("hotplugged").GetBoolean() ? " hot" : "")}")];

    private static string Error(JsonElement reply, string code)
    {
        Assert.False(reply.GetProperty("ok").GetBoolean(), reply.ToString());
        var error = reply.GetProperty("error");
        Assert.Equal(code, error.GetProperty("code").GetString());
        return error.GetProperty("message").GetString()!;
    }

    private static string AddSpec(string socket) => $"\"device\": {{\"type\": \"vfio-user\", \"socket\": \"{socket}\"}}";

    /// <summary>Sockets the VMM process holds open (its fds that are sockets).</summary>
    private static int OpenSockets(VmmProcess vmm) =>
        Directory.GetFiles($"/proc/{vmm.Pid}/fd").Count(fd => { try { return new FileInfo(fd).LinkTarget?.StartsWith("socket:") == true; } catch (IOException) { return false; } });

    [Fact]
    public void AHotPluggedVfioUserDeviceRunsDmaWithMsixThenIsEjectedAndTheServerSeesTheDisconnect()
    {
        using var dir = new TempDir();
        using var server = new VfioUserTestServer();
        string sock = dir.File("c.sock"), serial = dir.File("serial.log");
        // Guest RAM in memfds: the server maps it for DMA (management always asks for it; the VMM alone only with a
        // configured vfio-user device).
        using var vmm = new VmmProcess(["--control-socket", sock, "--serial", "file:" + serial, "--memfd", "on"], redirectStdin: false, unjailed: PlugsByPath);
        try
        {
            using var client = new ControlClient(sock);
            client.WaitForState("Running", Timeout);
            Assert.True(WaitForFile(serial, t => t.Contains("ready"), Timeout), ReadText(serial));
            using var guest = Attach(sock, serial);
            Type(guest, "vfu info", "vfu: no device 1b36:7f5e");
            int socketsBefore = OpenSockets(vmm);

            // Plugged into the lowest free slot; the guest's scan sees the insert event and the new function.
            var added = client.Ok("device.add", AddSpec(server.SocketPath));
            log.WriteLine(added.ToString());
            var device = added.GetProperty("device");
            Assert.Equal("vfio-user", device.GetProperty("type").GetString());
            Assert.Equal("00:01.0", device.GetProperty("pci").GetString());
            Assert.Equal(server.SocketPath, device.GetProperty("socket").GetString());
            Assert.True(WaitForFile(serial, t => t.Contains("pci: slot 01 added 1b36:7f5e"), Timeout), Tail(ReadText(serial)));
            Assert.Equal(["00:01.0 vfio-user hot"], DescribedDevices(client));
            Assert.Equal(socketsBefore + 1, OpenSockets(vmm));

            // The guest drives it: BARs the VMM placed at plug time, MSI-X through KVM irqfds, DMA into guest RAM.
            string o = Type(guest, "vfu test 8", "vfu: test rounds=8");
            Assert.Contains("vfu: test rounds=8 ok=8 irqs=8 completed=8", o);
            o = Type(guest, "vfu bar", "vfu: bar2");
            Assert.Matches(@"vfu: bar2 0x[0-9a-f]+ sum=(0x[0-9a-f]{8}) device=\1 readback=ok", o);
            Assert.Matches(@"vfu: magic=0x30554656 version=1 completed=8 irqs=8 resets=1", Type(guest, "vfu info", "vfu: magic="));
            Assert.True(SpinWait.SpinUntil(() => vmm.Stderr.Contains("MSI-X enabled: 4 of 4 vectors delivered by KVM (irqfd)"), 10000), vmm.Stderr);

            // Like a configured passthrough device, a hot-plugged one refuses snapshots (its state lives in the device).
            Assert.Contains("no migration support", Error(client.Request("snapshot.create", $"\"path\": \"{dir.File("snap")}\""), "InvalidState"));

            // Removal: the guest ejects the slot; the VMM releases the function and closes the connection.
            var removed = client.Ok("device.remove", "\"pci\": \"00:01.0\", \"timeout_ms\": 60000");
            Assert.Equal("removed", removed.GetProperty("state").GetString());
            Assert.True(WaitForFile(serial, t => t.Contains("pci: slot 01 ejected"), Timeout), Tail(ReadText(serial)));
            Assert.True(SpinWait.SpinUntil(() => server.Stderr.Contains("client closed the connection"), 10000), server.Stderr);
            Assert.False(server.Process.HasExited);
            Assert.Empty(DescribedDevices(client));
            Assert.Equal(socketsBefore, OpenSockets(vmm));
            Type(guest, "vfu info", "vfu: no device 1b36:7f5e");
            Assert.Equal("Running", client.Ok("status").GetProperty("state").GetString());

            // Plugged again into a slot of our choosing: a new connection, and the device works as before.
            var back = client.Ok("device.add", AddSpec(server.SocketPath) + ", \"pci\": \"00:06.0\"");
            Assert.Equal("00:06.0", back.GetProperty("device").GetProperty("pci").GetString());
            Assert.True(WaitForFile(serial, t => t.Contains("pci: slot 06 added 1b36:7f5e"), Timeout), Tail(ReadText(serial)));
            Assert.Contains("vfu: test rounds=3 ok=3 irqs=3 completed=3", Type(guest, "vfu test 3", "vfu: test rounds=3"));
            Assert.Equal("removed", client.Ok("device.remove", "\"pci\": \"00:06.0\", \"timeout_ms\": 60000").GetProperty("state").GetString());
            Assert.True(SpinWait.SpinUntil(() => Regex.Matches(server.Stderr, "client closed the connection").Count >= 2, 10000), server.Stderr);
            Assert.Equal("Running", client.Ok("status").GetProperty("state").GetString());
            Assert.DoesNotContain("FAILED", ReadText(serial));
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

    [Fact]
    public void AHotPluggedVfioUserDeviceStaysPluggedAcrossAGuestRebootOnItsConnection()
    {
        using var dir = new TempDir();
        using var server = new VfioUserTestServer();
        string sock = dir.File("c.sock"), serial = dir.File("serial.log");
        using var vmm = new VmmProcess(["--control-socket", sock, "--serial", "file:" + serial, "--memfd", "on"], redirectStdin: false, unjailed: PlugsByPath);
        try
        {
            using var client = new ControlClient(sock);
            client.WaitForState("Running", Timeout);
            Assert.True(WaitForFile(serial, t => t.Contains("ready"), Timeout), ReadText(serial));
            using var guest = Attach(sock, serial);
            client.Ok("device.add", AddSpec(server.SocketPath) + ", \"pci\": \"00:04.0\"");
            Assert.Contains("vfu: test rounds=2 ok=2 irqs=2 completed=2", Type(guest, "vfu test 2", "vfu: test rounds=2"));

            // The guest resets the machine: the VMM builds it again, keeps the connection (resetting the device over
            // it) and plugs the device back in its slot before the boot, so the boot's PCI scan finds it.
            Type(guest, "reboot", "KvmPS built-in guest v1");
            Assert.True(WaitForFile(serial, t => Occurrences(t, "ready") >= 2, Timeout), Tail(ReadText(serial)));
            Assert.Equal(2, client.Ok("status").GetProperty("boots").GetInt32());
            Assert.Equal(["00:04.0 vfio-user hot"], DescribedDevices(client));
            Assert.Matches(@"vfu: magic=0x30554656 version=1 completed=0 irqs=0 resets=2 ", Type(guest, "vfu info", "resets="));
            Assert.Contains("vfu: test rounds=3 ok=3 irqs=3 completed=3", Type(guest, "vfu test 3", "vfu: test rounds=3"));
            Assert.Single(Regex.Matches(server.Stderr, "client connected"));
            Assert.Equal("removed", client.Ok("device.remove", "\"pci\": \"00:04.0\", \"timeout_ms\": 60000").GetProperty("state").GetString());
            Assert.True(SpinWait.SpinUntil(() => server.Stderr.Contains("client closed the connection"), 10000), server.Stderr);
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

    [Fact]
    public void AMissingSocketAServerThatDiesDuringTheAddAndGuestRamOutsideMemfdsAreClearErrorsAndTheVmRunsOn()
    {
        using var dir = new TempDir();
        string sock = dir.File("c.sock"), serial = dir.File("serial.log"), missing = dir.File("nobody.sock");
        using var dying = new VfioUserTestServer("--crash-after", "4"); // dies while the VMM sets the device up
        using var good = new VfioUserTestServer();
        using var vmm = new VmmProcess(["--control-socket", sock, "--serial", "file:" + serial], redirectStdin: false, unjailed: PlugsByPath); // guest RAM not in memfds
        try
        {
            using var client = new ControlClient(sock);
            client.WaitForState("Running", Timeout);
            Assert.True(WaitForFile(serial, t => t.Contains("ready"), Timeout), ReadText(serial));

            string message = Error(client.Request("device.add", AddSpec(missing)), "InvalidArgument");
            Assert.Contains(missing, message);
            Assert.Contains("cannot connect", message);

            message = Error(client.Request("device.add", AddSpec(dying.SocketPath)), "InvalidArgument");
            Assert.Contains(dying.SocketPath, message);
            Assert.True(dying.Process.WaitForExit(10000));

            // A working server, but the VM's RAM cannot be shared with it: refused naming why; the connection is closed.
            message = Error(client.Request("device.add", AddSpec(good.SocketPath)), "InvalidArgument");
            Assert.Contains(good.SocketPath, message);
            Assert.Contains("memfd", message);
            Assert.True(SpinWait.SpinUntil(() => good.Stderr.Contains("client closed the connection"), 10000), good.Stderr);

            // Nothing stayed: no device, no slot taken, the guest runs and answers.
            Assert.Empty(DescribedDevices(client));
            Assert.Equal("Running", client.Ok("status").GetProperty("state").GetString());
            using (var guest = Attach(sock, serial)) Type(guest, "info", "pcihp: gpe=1 slots=fffffffe devices=-");
            Assert.DoesNotContain("Unhandled exception", vmm.Stderr);
            client.Ok("stop", "\"graceful\": false");
            Assert.Equal(0, vmm.WaitForExit(Timeout));
        }
        finally
        {
            log.WriteLine("stderr:\n" + vmm.Stderr);
            log.WriteLine("dying server:\n" + dying.Stderr);
        }
    }
}
