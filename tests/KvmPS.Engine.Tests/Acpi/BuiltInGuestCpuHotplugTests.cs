using System.Text;
using System.Text.Json;
using KvmPS.Engine.Tests.Support;
using Xunit.Abstractions;
using static KvmPS.Engine.Tests.State.WorkloadConsole;

namespace KvmPS.Engine.Tests.Acpi;

/// <summary>
/// The guest side of ACPI CPU hot-plug and the power button, with the built-in guest in a kvmps-vmm process: its SCI
/// handler runs the CPU scan on the hot-plug GPE (INIT/SIPI for an inserted CPU, park and eject for a removal) and
/// powers off on the power button; <c>info</c> prints "cpus: present=P online=O ids=...".
/// </summary>
[Collection("vmm-process")]
public class BuiltInGuestCpuHotplugTests(ITestOutputHelper log)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);
    private const string WaitMs = "\"timeout_ms\": 60000";

    /// <summary>Types a command on the attached console and returns what came back up to <paramref name="until"/>.</summary>
    private string Type(ControlClient console, string command, string until)
    {
        console.Stream.Write(Encoding.ASCII.GetBytes(command + "\r"));
        string got = console.ReadConsoleUntil(until, Timeout);
        log.WriteLine($"> {command}\n{got}");
        Assert.Contains(until, got);
        return got;
    }

    private static ControlClient AttachConsole(string sock)
    {
        var console = new ControlClient(sock);
        Assert.True(console.Ok("console.attach").GetProperty("attached").GetBoolean());
        return console;
    }

    private static JsonElement SetVcpus(ControlClient client, int count, int present)
    {
        var set = client.Ok("vcpu.set", $"\"count\": {count}, {WaitMs}");
        Assert.False(set.GetProperty("timed_out").GetBoolean(), set.ToString());
        Assert.Equal(present, set.GetProperty("vcpus").GetInt32());
        Assert.Equal(0, set.GetProperty("inserting").GetArrayLength());
        Assert.Equal(0, set.GetProperty("removing").GetArrayLength());
        return set;
    }

    private static string[] VcpuStates(ControlClient client) =>
        [.. client.Ok("status").GetProperty("vcpus").EnumerateArray().Select(v => v.GetProperty("state").GetString()!)];

    [Fact]
    public void TheGuestOnlinesAddedCpusParksAndEjectsRemovedOnesAndPowersOffOnThePowerButton()
    {
        using var dir = new TempDir();
        string sock = dir.File("c.sock");
        using var vmm = new VmmProcess("--vcpus", "1", "--max-vcpus", "4", "--control-socket", sock, "--serial", "none");
        using var client = new ControlClient(sock);
        client.WaitForState("Running", Timeout);
        using var console = AttachConsole(sock);
        console.ReadConsoleUntil("ready", Timeout);
        Type(console, "info", "cpus: present=1 online=1 ids=0\r\n");

        SetVcpus(client, 4, present: 4);
        Type(console, "info", "cpus: present=4 online=4 ids=0,1,2,3\r\n");
        Assert.Equal(4, client.Ok("describe").GetProperty("present_vcpus").GetInt32());

        // Removal: the guest parks CPUs 2 and 3 and ejects them; their vCPU threads park outside KVM.
        SetVcpus(client, 2, present: 2);
        Type(console, "info", "cpus: present=2 online=2 ids=0,1\r\n");
        Assert.Equal(["Running", "Running", "Ejected", "Ejected"], VcpuStates(client));
        var describe = client.Ok("describe");
        Assert.Equal(2, describe.GetProperty("present_vcpus").GetInt32());
        Assert.Equal(4, describe.GetProperty("max_vcpus").GetInt32());
        Assert.Equal(1, describe.GetProperty("vcpus").GetInt32()); // the configuration's boot count

        // Added again: the parked vCPUs wait for INIT/SIPI, and the guest starts them again.
        SetVcpus(client, 4, present: 4);
        Type(console, "info", "cpus: present=4 online=4 ids=0,1,2,3\r\n");
        Assert.Equal(["Running", "Running", "Running", "Running"], VcpuStates(client));

        // Beyond the maximum, below one: refused naming the limit; the guest still has 4.
        foreach (int bad in new[] { 5, 0, -1 })
        {
            var refused = client.Request("vcpu.set", $"\"count\": {bad}");
            Assert.Equal("InvalidArgument", refused.GetProperty("error").GetProperty("code").GetString());
            Assert.Contains("maximum 4", refused.GetProperty("error").GetProperty("message").GetString());
        }
        Type(console, "info", "cpus: present=4 online=4 ids=0,1,2,3\r\n");

        // The power button: the guest enabled it, and powers off through S5; the VMM exits as on any guest power-off.
        Assert.True(client.Ok("status").GetProperty("acpi_power_button").GetBoolean());
        var stop = client.Ok("stop", "\"graceful\": true, \"timeout_ms\": 30000");
        Assert.Equal("PoweredOff", stop.GetProperty("outcome").GetString());
        Assert.True(stop.GetProperty("power_button").GetBoolean());
        Assert.False(stop.GetProperty("forced").GetBoolean());
        Assert.Equal(0, vmm.WaitForExit(Timeout));
    }

    [Fact]
    public void ARemovalTheGuestNeverEjectsTimesOutWithTheCpusPresentAndRunning()
    {
        using var dir = new TempDir();
        string sock = dir.File("c.sock");
        // kvmps.nosci: the guest takes no ACPI event, as an OS without CPU hot-plug support.
        using var vmm = new VmmProcess("--vcpus", "3", "--control-socket", sock, "--serial", "none", "--cmdline", "kvmps.nosci");
        using var client = new ControlClient(sock);
        client.WaitForState("Running", Timeout);

        var set = client.Ok("vcpu.set", "\"count\": 1, \"timeout_ms\": 1500");
        Assert.True(set.GetProperty("timed_out").GetBoolean());
        Assert.Equal(3, set.GetProperty("vcpus").GetInt32());
        Assert.Equal([1, 2], set.GetProperty("removing").EnumerateArray().Select(e => e.GetInt32()));
        // Nothing was torn down under the guest: every vCPU runs, the VM runs.
        Assert.Equal(["Running", "Running", "Running"], VcpuStates(client));
        Assert.Equal(3, client.Ok("describe").GetProperty("present_vcpus").GetInt32());
        Assert.Equal("Running", client.Ok("status").GetProperty("state").GetString());
        var bad = client.Request("vcpu.set", "\"count\": 2, \"timeout_ms\": 600001");
        Assert.Equal("InvalidArgument", bad.GetProperty("error").GetProperty("code").GetString());
        Assert.Contains("timeout_ms", bad.GetProperty("error").GetProperty("message").GetString());
        client.Ok("stop", "\"graceful\": false");
        Assert.Equal(0, vmm.WaitForExit(Timeout));
    }

    [Fact]
    public void ASnapshotAfterAHotAddRestoresFourCpusAndTheWorkloadContinues()
    {
        using var dir = new TempDir();
        string serial = dir.File("before.log"), sock = dir.File("a.sock"), snapshot = dir.File("snap");
        string before;
        using (var vmm = new VmmProcess("--vcpus", "1", "--max-vcpus", "4", "--memory", "256M", "--control-socket", sock, "--serial", "file:" + serial))
        {
            using var client = new ControlClient(sock);
            client.WaitForState("Running", Timeout);
            Assert.True(WaitForFile(serial, t => t.Contains("ready"), Timeout), ReadText(serial));
            SetVcpus(client, 4, present: 4);
            using var console = AttachConsole(sock);
            Type(console, "info", "cpus: present=4 online=4 ids=0,1,2,3\r\n");
            console.Stream.Write(Encoding.ASCII.GetBytes("work 4\r"));
            Assert.True(WaitForFile(serial, t => t.Contains("work: verify ok pass 1") && CountLine().Matches(t).Count >= 10, Timeout), ReadText(serial));
            var reply = client.Ok("snapshot.create", $"\"path\": \"{snapshot}\", \"resume\": false");
            Assert.Equal("Paused", reply.GetProperty("vm_state").GetString());
            before = ReadText(serial);
            vmm.Signal(9);
            vmm.WaitForExit(Timeout);
        }

        string after = dir.File("after.log"), sock2 = dir.File("b.sock");
        using var restored = new VmmProcess("--restore", snapshot, "--serial", "file:" + after, "--control-socket", sock2);
        Assert.True(WaitForFile(after, t => Occurrences(t, "work: verify ok pass") >= 2 || t.Contains("FAILED"), Timeout), ReadText(after) + restored.Stderr);
        Assert.DoesNotContain("FAILED", ReadText(after));
        Assert.DoesNotContain("KvmPS built-in guest v1", ReadText(after)); // continued, not rebooted
        var counts = CountLine().Matches(before + ReadText(after)).Select(m => long.Parse(m.Groups[1].Value)).ToList();
        for (int i = 0; i < counts.Count; i++) Assert.Equal(i + 1, counts[i]);

        using var client2 = new ControlClient(sock2);
        Assert.Equal(["Running", "Running", "Running", "Running"], VcpuStates(client2));
        Assert.Equal(4, client2.Ok("describe").GetProperty("present_vcpus").GetInt32());
        using var console2 = AttachConsole(sock2);
        console2.Stream.Write(Encoding.ASCII.GetBytes("q"));
        Assert.True(WaitForFile(after, t => t.Contains("work: stopped at"), Timeout), ReadText(after));
        Type(console2, "info", "cpus: present=4 online=4 ids=0,1,2,3\r\n");
        // The restored guest's CPUs answer the hot-plug controller as before: a removal parks and ejects them.
        SetVcpus(client2, 2, present: 2);
        Type(console2, "info", "cpus: present=2 online=2 ids=0,1\r\n");
        Assert.Equal(["Running", "Running", "Ejected", "Ejected"], VcpuStates(client2));

        // And a snapshot of the restored VM with ejected vCPUs restores them ejected.
        string again = dir.File("again");
        client2.Ok("snapshot.create", $"\"path\": \"{again}\", \"resume\": false");
        restored.Signal(9);
        restored.WaitForExit(Timeout);
        string sock3 = dir.File("c.sock");
        using var third = new VmmProcess("--restore", again, "--serial", "none", "--control-socket", sock3);
        using var client3 = new ControlClient(sock3);
        client3.WaitForState("Running", Timeout);
        Assert.True(SpinWait.SpinUntil(() => VcpuStates(client3).SequenceEqual(["Running", "Running", "Ejected", "Ejected"]), Timeout), string.Join(",", VcpuStates(client3)));
        using var console3 = AttachConsole(sock3);
        SetVcpus(client3, 3, present: 3);
        Type(console3, "info", "cpus: present=3 online=3 ids=0,1,2\r\n");
        client3.Ok("stop", "\"graceful\": false");
        third.WaitForExit(Timeout);
    }
}
