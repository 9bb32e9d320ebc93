using System.Text;
using System.Text.RegularExpressions;
using KvmPS.Engine.Tests.Support;
using Xunit.Abstractions;

namespace KvmPS.Engine.Tests.Devices;

/// <summary>
/// virtio-mem through a kvmps-vmm process and the built-in guest: 256 MiB boot memory, 512 MiB maximum. memory.set
/// grows the guest (it plugs 256 MiB and its page pattern verifies), shrinks it again (the VMM's RSS falls), and
/// refuses sizes beyond the maximum or off the block size, naming the limit, with the VM unchanged.
/// </summary>
[Collection("vmm-process")]
public partial class VirtioMemProcessTests(ITestOutputHelper log)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(120);
    private const long MiB = 1 << 20;

    private static long VmRssBytes(int pid)
    {
        foreach (string line in File.ReadLines($"/proc/{pid}/status"))
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
        throw new InvalidOperationException("no VmRSS line");
    }

    [GeneratedRegex(@"vmem: plugged (\d+) requested (\d+) region 0x([0-9a-f]+)\+0x([0-9a-f]+) block (\d+) verify (\S+)[^\n]*\n")]
    private static partial Regex VmemLine();

    [Fact]
    public void MemorySetGrowsAndShrinksTheBuiltInGuest()
    {
        using var dir = new TempDir();
        string sock = dir.File("c.sock");
        using var vmm = new VmmProcess("--memory", "256M", "--max-memory", "512M", "--control-socket", sock, "--serial", "none");
        using var client = new ControlClient(sock);
        try
        {
            client.WaitForState("Running", Timeout);
            var describe = client.Ok("describe");
            var requests = describe.GetProperty("requests").EnumerateArray().Select(e => e.GetString()).ToArray();
            Assert.Contains("memory.set", requests);
            Assert.Contains(describe.GetProperty("devices").EnumerateArray(), d => d.GetProperty("type").GetString() == "mem");

            using var console = new ControlClient(sock);
            Assert.True(console.Ok("console.attach").GetProperty("attached").GetBoolean());
            console.ReadConsoleUntil("ready", Timeout);
            Match Vmem() => this.Vmem(console);

            var first = Vmem(); // the driver starts: nothing requested, nothing plugged
            Assert.Equal("0", first.Groups[1].Value);
            Assert.Equal((256 * MiB).ToString("x"), first.Groups[3].Value); // right after the boot RAM, below 4 GiB
            long rssBefore = VmRssBytes(vmm.Pid);

            var grow = client.Ok("memory.set", $"\"bytes\": {512 * MiB}");
            Assert.Equal(256 * MiB, grow.GetProperty("startup_bytes").GetInt64());
            Assert.Equal(512 * MiB, grow.GetProperty("maximum_bytes").GetInt64());
            Assert.Equal(512 * MiB, grow.GetProperty("requested_bytes").GetInt64());
            var grown = Vmem();
            Assert.Equal((256 * MiB).ToString(), grown.Groups[1].Value);
            Assert.Equal("ok", grown.Groups[6].Value);
            var get = client.Ok("memory.get");
            Assert.Equal(256 * MiB, get.GetProperty("plugged_bytes").GetInt64());
            Assert.Equal(512 * MiB, get.GetProperty("current_bytes").GetInt64());
            long rssGrown = VmRssBytes(vmm.Pid);

            // Refused, naming the limit; nothing changes.
            var above = client.Request("memory.set", $"\"bytes\": {1024 * MiB}");
            Assert.False(above.GetProperty("ok").GetBoolean());
            Assert.Equal("InvalidArgument", above.GetProperty("error").GetProperty("code").GetString());
            Assert.Contains($"maximum of {512 * MiB} bytes", above.GetProperty("error").GetProperty("message").GetString());
            var odd = client.Request("memory.set", $"\"bytes\": {300 * MiB + 4096}");
            Assert.Contains("block size", odd.GetProperty("error").GetProperty("message").GetString());
            var below = client.Request("memory.set", $"\"bytes\": {128 * MiB}");
            Assert.Contains($"boot memory of {256 * MiB} bytes", below.GetProperty("error").GetProperty("message").GetString());
            Assert.Equal(512 * MiB, client.Ok("memory.get").GetProperty("requested_bytes").GetInt64());

            var shrink = client.Ok("memory.set", $"\"bytes\": {256 * MiB}");
            Assert.Equal(256 * MiB, shrink.GetProperty("requested_bytes").GetInt64());
            var shrunk = Vmem();
            Assert.Equal("0", shrunk.Groups[1].Value);
            long rssShrunk = VmRssBytes(vmm.Pid);
            log.WriteLine($"VmRSS: before {rssBefore / MiB} MiB, grown {rssGrown / MiB} MiB, shrunk {rssShrunk / MiB} MiB");
            Assert.True(rssGrown - rssBefore >= 200 * MiB, $"RSS grew by only {(rssGrown - rssBefore) / MiB} MiB");
            Assert.True(rssGrown - rssShrunk >= 200 * MiB, $"RSS fell by only {(rssGrown - rssShrunk) / MiB} MiB");
            Assert.Equal(0, client.Ok("memory.get").GetProperty("error_responses").GetInt64());
            Assert.Equal("Running", client.Ok("status").GetProperty("state").GetString());
        }
        finally
        {
            log.WriteLine(vmm.Stderr);
        }
        client.Ok("stop", "\"graceful\": false");
        Assert.Equal(0, vmm.WaitForExit(Timeout));
    }

    /// <summary>
    /// The guest's driver acts on the configuration-change interrupt, as Linux's does: memory.set alone makes it plug
    /// and unplug (nothing is typed until the final check), and memory.get follows.
    /// </summary>
    [Fact]
    public void TheBuiltInGuestPlugsAndUnplugsOnTheConfigurationChangeInterrupt()
    {
        using var dir = new TempDir();
        string sock = dir.File("c.sock");
        using var vmm = new VmmProcess("--memory", "256M", "--max-memory", "512M", "--control-socket", sock, "--serial", "none");
        using var client = new ControlClient(sock);
        try
        {
            client.WaitForState("Running", Timeout);
            using var console = new ControlClient(sock);
            console.Ok("console.attach");
            console.ReadConsoleUntil("ready", Timeout);
            Assert.True(client.Ok("memory.get").GetProperty("driver_ok").GetBoolean(), "the guest takes the device at boot");

            client.Ok("memory.set", $"\"bytes\": {512 * MiB}");
            log.WriteLine(console.ReadConsoleUntil($"vmem: plugged {256 * MiB} requested {256 * MiB}", Timeout));
            Assert.Equal(256 * MiB, client.Ok("memory.get").GetProperty("plugged_bytes").GetInt64());

            client.Ok("memory.set", $"\"bytes\": {384 * MiB}");
            log.WriteLine(console.ReadConsoleUntil($"vmem: plugged {128 * MiB} requested {128 * MiB}", Timeout));
            Assert.Equal(128 * MiB, client.Ok("memory.get").GetProperty("plugged_bytes").GetInt64());

            var verified = Vmem(console, "vmem verify"); // what it plugged holds its pattern
            Assert.Equal("ok", verified.Groups[6].Value);
            Assert.Equal(0, client.Ok("memory.get").GetProperty("error_responses").GetInt64());
        }
        finally
        {
            log.WriteLine(vmm.Stderr);
        }
        client.Ok("stop", "\"graceful\": false");
        Assert.Equal(0, vmm.WaitForExit(Timeout));
    }

    /// <summary>Types <paramref name="command"/> on an attached console and returns its "vmem:" line, parsed.</summary>
    private Match Vmem(ControlClient console, string command = "vmem")
    {
        console.Stream.Write(Encoding.ASCII.GetBytes(command + "\r"));
        string got = "";
        var deadline = DateTime.UtcNow + Timeout;
        while (!VmemLine().IsMatch(got) && DateTime.UtcNow < deadline) got += console.ReadConsoleUntil("\n", TimeSpan.FromSeconds(5)); // whole lines
        log.WriteLine(got.Trim());
        var m = VmemLine().Match(got);
        Assert.True(m.Success, got);
        return m;
    }

    [Theory]
    [InlineData("private")]
    [InlineData("copy")]
    public void PluggedMemoryIsInTheSnapshotAndStillVerifiesAfterRestore(string restoreMemory)
    {
        using var dir = new TempDir();
        string snapshot = dir.File("snap");
        using (var vmm = new VmmProcess("--memory", "256M", "--max-memory", "512M", "--control-socket", dir.File("a.sock"), "--serial", "none"))
        using (var client = new ControlClient(dir.File("a.sock")))
        {
            client.WaitForState("Running", Timeout);
            using var console = new ControlClient(dir.File("a.sock"));
            console.Ok("console.attach");
            console.ReadConsoleUntil("ready", Timeout);
            client.Ok("memory.set", $"\"bytes\": {384 * MiB}");
            var grown = Vmem(console);
            Assert.Equal((128 * MiB).ToString(), grown.Groups[1].Value);
            Assert.Equal("ok", grown.Groups[6].Value);
            var reply = client.Ok("snapshot.create", $"\"path\": \"{snapshot}\", \"resume\": false");
            Assert.True(reply.GetProperty("memory_bytes").GetInt64() >= 128 * MiB / 4096 * 16, "the plugged blocks' pages are in the memory file");
            vmm.Signal(9);
            vmm.WaitForExit(Timeout);
        }
        Assert.Equal(512 * MiB, new FileInfo(Path.Combine(snapshot, "memory.bin")).Length); // boot RAM + the whole region, sparse

        string sock = dir.File("b.sock");
        using var restored = new VmmProcess("--restore", snapshot, "--restore-memory", restoreMemory, "--control-socket", sock, "--serial", "none");
        using var c2 = new ControlClient(sock);
        try
        {
            c2.WaitForState("Running", Timeout);
            var get = c2.Ok("memory.get");
            Assert.Equal(128 * MiB, get.GetProperty("plugged_bytes").GetInt64());
            Assert.Equal(384 * MiB, get.GetProperty("requested_bytes").GetInt64());
            using var console = new ControlClient(sock);
            console.Ok("console.attach");
            var verified = Vmem(console, "vmem verify");
            Assert.Equal((128 * MiB).ToString(), verified.Groups[1].Value);
            Assert.Equal("ok", verified.Groups[6].Value);
            Assert.Contains("(64 blocks)", verified.Value);
            // The restored device goes on: shrinking unplugs what the snapshot had plugged.
            c2.Ok("memory.set", $"\"bytes\": {256 * MiB}");
            Assert.Equal("0", Vmem(console).Groups[1].Value);
            Assert.Equal(0, c2.Ok("memory.get").GetProperty("plugged_bytes").GetInt64());
        }
        finally
        {
            log.WriteLine(restored.Stderr);
        }
        c2.Ok("stop", "\"graceful\": false");
        Assert.Equal(0, restored.WaitForExit(Timeout));
    }

    [Fact]
    public void MemorySetWithoutAMaximumIsRefused()
    {
        using var dir = new TempDir();
        string sock = dir.File("c.sock");
        using var vmm = new VmmProcess("--memory", "256M", "--control-socket", sock, "--serial", "none");
        using var client = new ControlClient(sock);
        client.WaitForState("Running", Timeout);
        var reply = client.Request("memory.set", $"\"bytes\": {512 * MiB}");
        Assert.Equal("UnknownRequest", reply.GetProperty("error").GetProperty("code").GetString());
        Assert.Contains("memory.set", reply.GetProperty("error").GetProperty("message").GetString());
        client.Ok("stop", "\"graceful\": false");
        Assert.Equal(0, vmm.WaitForExit(Timeout));
    }
}
