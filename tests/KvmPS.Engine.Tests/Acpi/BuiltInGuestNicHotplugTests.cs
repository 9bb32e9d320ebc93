using System.Text;
using KvmPS.Engine.Tests.Devices;
using KvmPS.Engine.Tests.Support;
using Xunit.Abstractions;
using static KvmPS.Engine.Tests.State.WorkloadConsole;

namespace KvmPS.Engine.Tests.Acpi;

/// <summary>
/// ACPI PCI hot-plug of virtio-net: a kvmps-vmm with the built-in guest inside a test-made network namespace gets a NIC
/// on a tap while it runs (device.add), the host pings the guest through it, and device.remove has the guest eject it,
/// after which the VMM closes the tap (which, being the VMM's, goes away).
/// </summary>
[Collection("vmm-process")]
public sealed class BuiltInGuestNicHotplugTests(ITestOutputHelper log)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(120);

    [NetNsFact(needsPing: true)]
    public void AHotAddedNicAnswersPingsAndIsReleasedOnRemoval()
    {
        using var ns = new NetNs();
        using var dir = new TempDir();
        string sock = dir.File("c.sock"), serial = dir.File("serial.log");
        // Unjailed: the VMM itself makes the tap at device.add and deletes it at removal, which needs CAP_NET_ADMIN (a
        // jailed VMM is passed its taps open by management: docs/vmm.md "Passing open files").
        using var vmm = ns.Start([VmmBinary.Executable, "--control-socket", sock, "--serial", "file:" + serial], unjailed: true);
        var stderr = new StringBuilder();
        vmm.OutputDataReceived += (_, _) => { }; // drained, so the VMM never blocks on a full pipe
        vmm.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (stderr) stderr.AppendLine(e.Data); };
        vmm.BeginOutputReadLine();
        vmm.BeginErrorReadLine();
        try
        {
            using var client = new ControlClient(sock, TimeSpan.FromSeconds(30));
            client.WaitForState("Running", Timeout);
            Assert.True(WaitForFile(serial, t => t.Contains("ready"), Timeout), ReadText(serial));
            using var console = new ControlClient(sock);
            console.Ok("console.attach", "\"replay\": false");
            void Type(string command, string expect)
            {
                int before = Occurrences(ReadText(serial), expect);
                console.Stream.Write(Encoding.ASCII.GetBytes(command + "\r"));
                Assert.True(WaitForFile(serial, t => Occurrences(t, expect) > before, Timeout), $"no '{expect}' after '{command}':\n{ReadText(serial)}");
            }

            var added = client.Ok("device.add", "\"device\": {\"type\": \"net\", \"tap\": \"kvt0\"}, \"timeout_ms\": 60000");
            log.WriteLine(added.ToString());
            Assert.True(added.GetProperty("driver_ready").GetBoolean(), added.ToString());
            Assert.Equal("00:01.0", added.GetProperty("device").GetProperty("pci").GetString());
            Assert.True(WaitForFile(serial, t => t.Contains("pci: slot 01 added 1af4:1041 driver ready"), Timeout), ReadText(serial));
            Assert.Contains("UP", ns.Ip("link", "show", "kvt0")); // the VMM created the tap with the device
            ns.Ip("addr", "add", "10.99.0.1/24", "dev", "kvt0");

            Type("net info", "link up");
            Type("net ip 10.99.0.2", "net: ip 10.99.0.2");
            Type("net serve 3 60", "net: serving");
            var (code, ping) = ns.Exec(Timeout, "ping", "-c", "3", "-W", "5", "10.99.0.2");
            log.WriteLine(ping);
            Assert.True(code == 0, $"ping failed ({code}):\n{ping}\nguest:\n{ReadText(serial)}");
            Assert.True(WaitForFile(serial, t => t.Contains("net: replied 3"), Timeout), ReadText(serial));

            var removed = client.Ok("device.remove", "\"pci\": \"00:01.0\", \"timeout_ms\": 60000");
            Assert.Equal("removed", removed.GetProperty("state").GetString());
            Assert.True(WaitForFile(serial, t => t.Contains("pci: slot 01 ejected (driver released)"), Timeout), ReadText(serial));
            Assert.Equal(0, client.Ok("describe").GetProperty("devices").GetArrayLength());
            Assert.DoesNotContain("kvt0", ns.Ip("link", "show")); // the VMM's tap closed with the device
            Type("net info", "net: no virtio-net device");
            client.Ok("stop", "\"graceful\": false");
            Assert.True(vmm.WaitForExit((int)Timeout.TotalMilliseconds), $"the VMM did not exit: {stderr}");
            vmm.WaitForExit();
        }
        finally
        {
            if (!vmm.HasExited) { try { vmm.Kill(true); vmm.WaitForExit(5000); } catch { } }
        }
    }
}
