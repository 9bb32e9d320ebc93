using System.Text;
using KvmPS.Engine.Tests.Support;

namespace KvmPS.Engine.Tests.Vmm;

/// <summary>The published kvmps-vmm binary: boots, exit statuses, bad input, the control socket (docs/vmm.md).</summary>
[Collection("vmm-process")]
public class VmmProcessTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [Theory]
    [InlineData(1, "256M", 256)]
    [InlineData(4, "1G", 1024)]
    public void BootsBuiltInGuestAndExitsWithDebugExitStatus(int vcpus, string memory, int mib)
    {
        var (code, stdout, stderr) = VmmProcess.Run(Timeout, "--vcpus", vcpus.ToString(), "--memory", memory, "--cmdline", "kvmps.run=exit 21");
        Assert.True(code == (21 << 1 | 1), $"exit {code}\n{stdout}\n{stderr}");
        Assert.Contains($"cpus: acpi={vcpus} mp={vcpus} online={vcpus} max={vcpus}", stdout);
        Assert.Contains($"memory: {mib} MiB", stdout);
    }

    [Fact]
    public void ReadsConsoleInputFromStdinAndPowersOff()
    {
        using var vmm = new VmmProcess(["--vcpus", "2"], redirectStdin: true);
        Assert.True(vmm.WaitForStdout("ready", Timeout), vmm.Stdout + vmm.Stderr);
        vmm.Stdin.Write("info\n");
        vmm.Stdin.Flush();
        Assert.True(vmm.WaitForStdout("> info", Timeout), vmm.Stdout);
        vmm.Stdin.Write("poweroff\n");
        vmm.Stdin.Flush();
        Assert.Equal(0, vmm.WaitForExit(Timeout));
    }

    [Fact]
    public void ReservesMaxVcpusForHotAdd()
    {
        var (code, stdout, _) = VmmProcess.Run(Timeout, "--vcpus", "2", "--max-vcpus", "6", "--cmdline", "kvmps.run=exit 0");
        Assert.Equal(1, code);
        Assert.Contains("cpus: acpi=2 mp=2 online=2 max=6", stdout);
    }

    [Fact]
    public void JsonConfigFileWorksAndFlagsOverrideIt()
    {
        using var dir = new TempDir();
        string serial = dir.File("serial.log");
        File.WriteAllText(dir.File("vm.json"), $$"""{ "vcpus": 3, "memory_bytes": 402653184, "serial": "file:{{serial}}", "cmdline": "kvmps.run=exit 2" }""");
        var (code, _, stderr) = VmmProcess.Run(Timeout, "--config", dir.File("vm.json"), "--cmdline", "kvmps.run=exit 9");
        Assert.True(code == 19, stderr);
        string log = File.ReadAllText(serial);
        Assert.Contains("cpus: acpi=3", log);
        Assert.Contains("memory: 384 MiB", log);
    }

    [Fact]
    public void RngOptionAddsAVirtioRngDevice()
    {
        var (code, stdout, stderr) = VmmProcess.Run(Timeout, "--rng", "on", "--cmdline", "kvmps.run=lspci,rng 16,exit 0");
        Assert.True(code == 1, stderr);
        Assert.Contains("pci: 00:01.0 1af4:1044", stdout);
        Assert.Contains("rng: ok", stdout);
        var (_, without, _) = VmmProcess.Run(Timeout, "--cmdline", "kvmps.run=lspci,exit 0");
        Assert.DoesNotContain("1af4:1044", without);
    }

    [Fact]
    public void GuestTripleFaultExitsWithCrashStatusAndRegisters()
    {
        var (code, _, stderr) = VmmProcess.Run(Timeout, "--cmdline", "kvmps.run=crash");
        Assert.Equal(10, code);
        Assert.Contains("triple fault", stderr);
        Assert.Contains("RIP=0x", stderr);
    }

    [Fact]
    public void GuestResetWithStopPolicyEndsTheProcess()
    {
        var (code, _, stderr) = VmmProcess.Run(Timeout, "--cmdline", "kvmps.run=reboot", "--on-reset", "stop");
        Assert.True(code == 0, stderr);
    }

    [Fact]
    public void GuestResetWithRebootPolicyBootsAgain()
    {
        using var dir = new TempDir();
        string sock = dir.File("c.sock");
        using var vmm = new VmmProcess("--cmdline", "kvmps.run=reboot", "--control-socket", sock, "--serial", "none");
        using var client = new ControlClient(sock);
        var deadline = DateTime.UtcNow + Timeout;
        int boots = 0;
        while (DateTime.UtcNow < deadline && (boots = client.Ok("status").GetProperty("boots").GetInt32()) < 3) Thread.Sleep(20);
        Assert.True(boots >= 3, $"boots {boots}");
        client.Ok("stop", "\"graceful\": false");
        Assert.Equal(0, vmm.WaitForExit(Timeout));
    }

    [Fact]
    public void ControlSocketAnswersEveryDocumentedRequest()
    {
        using var dir = new TempDir();
        string sock = dir.File("c.sock");
        // kvmps.nosci: the built-in guest ignores ACPI events, like a guest without ACPI support (the stop below).
        using var vmm = new VmmProcess("--vcpus", "2", "--control-socket", sock, "--serial", "none", "--cmdline", "kvmps.nosci");
        using var client = new ControlClient(sock);

        Assert.Equal("kvmps-vmm", client.Ok("ping").GetProperty("pong").GetString());

        var describe = client.Ok("describe");
        Assert.Equal(2, describe.GetProperty("vcpus").GetInt32());
        Assert.Equal(256L << 20, describe.GetProperty("memory_bytes").GetInt64());
        Assert.Equal(vmm.Pid, describe.GetProperty("pid").GetInt32());
        Assert.Equal(Directory.Exists("/sys/module/kvm_pvm"), describe.GetProperty("nested_pvm").GetBoolean());
        var requests = describe.GetProperty("requests").EnumerateArray().Select(e => e.GetString()).ToArray();
        Assert.Equal(["describe", "status", "metrics", "pause", "resume", "stop", "console.attach", "ping", "snapshot.create", "vcpu.set", "device.add", "device.remove", "migrate", "migrate.status", "migrate.cancel"], requests);

        var status = client.WaitForState("Running", Timeout);
        Assert.Equal("Running", status.GetProperty("state").GetString());
        Assert.Equal(2, status.GetProperty("vcpus").GetArrayLength());

        var paused = client.Ok("pause");
        Assert.Equal("Paused", paused.GetProperty("state").GetString());
        Assert.All(paused.GetProperty("vcpus").EnumerateArray(), v => Assert.Equal("Paused", v.GetProperty("state").GetString()));
        Assert.Equal("Running", client.Ok("resume").GetProperty("state").GetString());

        var metrics = client.Ok("metrics");
        Assert.True(metrics.GetProperty("exits").GetProperty("io").GetInt64() > 0);
        Assert.True(metrics.GetProperty("rss_bytes").GetInt64() > 0);
        Assert.True(metrics.GetProperty("vmm_rss_bytes").GetInt64() > 0);
        Assert.True(metrics.GetProperty("guest_rss_bytes").GetInt64() > 0);
        Assert.Equal(2, metrics.GetProperty("vcpus").GetArrayLength());

        using (var console = new ControlClient(sock))
        {
            Assert.True(console.Ok("console.attach").GetProperty("attached").GetBoolean());
            string history = console.ReadConsoleUntil("ready", Timeout);
            Assert.Contains("KvmPS built-in guest v1", history);
            console.Stream.Write(Encoding.ASCII.GetBytes("info\r"));
            string echoed = console.ReadConsoleUntil("memory: 256 MiB", Timeout);
            Assert.Contains("cpus: acpi=2", echoed);
        }

        Assert.False(client.Ok("status").GetProperty("acpi_power_button").GetBoolean()); // the guest (kvmps.nosci) never enables it
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var stop = client.Ok("stop", "\"graceful\": true, \"timeout_ms\": 5000");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(4), "a guest that ignores the power button is not waited for");
        Assert.True(stop.GetProperty("forced").GetBoolean());
        Assert.False(stop.GetProperty("power_button").GetBoolean());
        Assert.Equal("NoAcpi", stop.GetProperty("outcome").GetString());
        Assert.Equal(0, stop.GetProperty("waited_ms").GetInt64());
        Assert.Equal(0, vmm.WaitForExit(Timeout));
        Assert.False(File.Exists(sock), "the control socket must be removed at exit");
        Assert.False(File.Exists(sock + ".lock"));
    }

    [Fact]
    public void AGracefulStopOfAPausedVmSaysItWasPausedAndWaitsForNothing()
    {
        using var dir = new TempDir();
        string sock = dir.File("c.sock");
        using var vmm = new VmmProcess("--control-socket", sock, "--serial", "none");
        using var client = new ControlClient(sock);
        client.WaitForState("Running", Timeout);
        client.Ok("pause");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var stop = client.Ok("stop", "\"graceful\": true, \"timeout_ms\": 5000");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(4));
        Assert.Equal("Paused", stop.GetProperty("outcome").GetString());
        Assert.True(stop.GetProperty("forced").GetBoolean());
        Assert.False(stop.GetProperty("power_button").GetBoolean());
        Assert.Equal(0, vmm.WaitForExit(Timeout));
    }

    [Fact]
    public void MalformedRequestsGetErrorsAndTheConnectionStaysUsable()
    {
        using var dir = new TempDir();
        string sock = dir.File("c.sock");
        using var vmm = new VmmProcess("--control-socket", sock, "--serial", "none");
        using var client = new ControlClient(sock);
        Assert.Contains("\"code\":\"MalformedRequest\"", client.SendRaw("{not json"));
        Assert.Contains("\"code\":\"MalformedRequest\"", client.SendRaw("[1,2]"));
        Assert.Contains("\"code\":\"MalformedRequest\"", client.SendRaw("{\"id\": 1}"));
        Assert.Contains("\"code\":\"UnknownRequest\"", client.SendRaw("{\"request\": \"warp\"}"));
        Assert.Contains("\"code\":\"InvalidArgument\"", client.SendRaw("{\"request\": \"stop\", \"timeout_ms\": \"soon\"}"));
        Assert.Equal("Running", client.WaitForState("Running", Timeout).GetProperty("state").GetString());
        client.Ok("stop", "\"graceful\": false");
        Assert.Equal(0, vmm.WaitForExit(Timeout));
    }

    [Fact]
    public void ANewConnectionBeyondTheLimitEvictsTheLongestIdleOneAndIsServed()
    {
        using var dir = new TempDir();
        string sock = dir.File("c.sock");
        using var vmm = new VmmProcess("--control-socket", sock, "--serial", "none");
        var clients = new List<ControlClient>();
        try
        {
            for (int i = 0; i < 32; i++) { var c = new ControlClient(sock); c.Ok("ping"); clients.Add(c); }
            clients[5].Ok("ping"); // the longest idle is now clients[0]
            // Over the limit: the client idle longest makes room (docs/vmm.md, "Connections"); management gets in.
            using (var extra = new ControlClient(sock))
                Assert.Equal("kvmps-vmm", extra.Ok("ping").GetProperty("pong").GetString());
            Assert.Null(clients[0].ReadLine()); // closed without a word
            Assert.Equal("kvmps-vmm", clients[1].Ok("ping").GetProperty("pong").GetString());
            using var again = new ControlClient(sock);
            again.Ok("stop", "\"graceful\": false");
        }
        finally { foreach (var c in clients) c.Dispose(); }
        Assert.Equal(0, vmm.WaitForExit(Timeout));
    }

    [Fact]
    public void SecondVmmOnTheSameSocketIsRefusedAndTheFirstKeepsRunning()
    {
        using var dir = new TempDir();
        string sock = dir.File("c.sock");
        using var first = new VmmProcess("--control-socket", sock, "--serial", "none");
        using var client = new ControlClient(sock);
        client.WaitForState("Running", Timeout);
        var (code, _, stderr) = VmmProcess.Run(Timeout, "--control-socket", sock, "--serial", "none");
        Assert.Equal(8, code);
        Assert.Contains(sock, stderr);
        Assert.Contains("in use", stderr);
        Assert.Equal("Running", client.Ok("status").GetProperty("state").GetString());
        client.Ok("stop", "\"graceful\": false");
        Assert.Equal(0, first.WaitForExit(Timeout));
    }

    [Fact]
    public void StaleSocketFromAKilledVmmIsReplaced()
    {
        using var dir = new TempDir();
        string sock = dir.File("c.sock");
        using (var killed = new VmmProcess("--control-socket", sock, "--serial", "none"))
        {
            using (var c = new ControlClient(sock)) c.Ok("ping");
            killed.Signal(9);
            killed.WaitForExit(Timeout);
        }
        Assert.True(File.Exists(sock), "SIGKILL leaves the socket file behind");
        using var vmm = new VmmProcess("--control-socket", sock, "--serial", "none");
        using var client = new ControlClient(sock);
        Assert.Equal("Running", client.WaitForState("Running", Timeout).GetProperty("state").GetString());
        client.Ok("stop", "\"graceful\": false");
        Assert.Equal(0, vmm.WaitForExit(Timeout));
    }

    [Fact]
    public void CrashWithControlSocketStaysUpForInspection()
    {
        using var dir = new TempDir();
        string sock = dir.File("c.sock");
        using var vmm = new VmmProcess("--control-socket", sock, "--serial", "none", "--cmdline", "kvmps.run=crash");
        using var client = new ControlClient(sock);
        var deadline = DateTime.UtcNow + Timeout;
        System.Text.Json.JsonElement status;
        while ((status = client.Ok("status")).GetProperty("state").GetString() != "Crashed" && DateTime.UtcNow < deadline) Thread.Sleep(20);
        Assert.Equal("Crashed", status.GetProperty("state").GetString());
        var exit = status.GetProperty("exit");
        Assert.Equal("Crashed", exit.GetProperty("kind").GetString());
        Assert.Contains("triple fault", exit.GetProperty("reason").GetString());
        Assert.StartsWith("0x", exit.GetProperty("registers").GetProperty("rip").GetString());
        client.Ok("stop");
        Assert.Equal(10, vmm.WaitForExit(Timeout));
    }

    [Fact]
    public void SigtermStopsTheVm()
    {
        using var dir = new TempDir();
        string sock = dir.File("c.sock");
        using var vmm = new VmmProcess("--control-socket", sock, "--serial", "none");
        using (var client = new ControlClient(sock)) client.Ok("ping");
        vmm.Signal(15);
        Assert.Equal(0, vmm.WaitForExit(Timeout));
        Assert.False(File.Exists(sock));
    }

    public static TheoryData<string[], int, string> BadInput() => new()
    {
        { ["--bogus", "1"], 2, "unknown option --bogus" },
        { ["--vcpus", "0"], 2, "vCPU count 0" },
        { ["--vcpus", "x"], 2, "--vcpus: 'x' is not a whole number" },
        { ["--memory", "12Q"], 2, "unknown size suffix" },
        { ["--vcpus", "4", "--max-vcpus", "2"], 2, "maximum vCPUs 2" },
        { ["--serial", "tty"], 2, "'tty' is not a serial mode" },
        { ["--kernel", "/nonexistent/vmlinux"], 6, "/nonexistent/vmlinux" },
        { ["--kernel", "/etc/hostname"], 6, "not a kernel" },
        { ["--initrd", "/nonexistent/initrd"], 6, "/nonexistent/initrd" },
        { ["--memory", "200T"], 8, "Cannot map" },
        { ["--config", "/nonexistent/vm.json"], 2, "/nonexistent/vm.json" },
        { ["--device", "warp"], 2, "unknown device type 'warp'" },
        { ["--device", "rng,speed=9"], 2, "key 'speed': unknown key for a rng device" },
        { ["--device", "rng,speed"], 2, "'speed' is not key=value" },
    };

    [Theory]
    [MemberData(nameof(BadInput))]
    public void BadInputGetsAClearErrorAndLeavesNothingBehind(string[] args, int expectedCode, string expectedText)
    {
        using var dir = new TempDir();
        string sock = dir.File("c.sock");
        var (code, _, stderr) = VmmProcess.Run(Timeout, [.. args, "--control-socket", sock]);
        Assert.True(code == expectedCode, $"exit {code}: {stderr}");
        Assert.Contains(expectedText, stderr);
        Assert.False(File.Exists(sock), "no stale control socket");
        Assert.False(File.Exists(sock + ".lock"), "no stale lock file");
    }

    [Fact]
    public void ConfigFileWithUnknownKeyIsRejectedNamingFileAndKey()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("vm.json"), """{ "vcpus": 1, "memroy": "1G" }""");
        var (code, _, stderr) = VmmProcess.Run(Timeout, "--config", dir.File("vm.json"));
        Assert.Equal(2, code);
        Assert.Contains(dir.File("vm.json"), stderr);
        Assert.Contains("'memroy'", stderr);
    }

    [Fact]
    public void DevicesInTheConfigFileAreValidatedNamingTheEntry()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("vm.json"), """{ "devices": [ { "type": "rng" }, { "kind": "rng" } ] }""");
        var (code, _, stderr) = VmmProcess.Run(Timeout, "--config", dir.File("vm.json"));
        Assert.Equal(2, code);
        Assert.Contains("field 'devices[1]'", stderr);
        Assert.Contains("no \"type\"", stderr);
    }

    [Fact]
    public void DescribeListsDevicesInSlotOrder()
    {
        using var dir = new TempDir();
        string sock = dir.File("c.sock");
        using var vmm = new VmmProcess("--device", "rng", "--control-socket", sock, "--serial", "none");
        using var client = new ControlClient(sock);
        client.WaitForState("Running", Timeout);
        var devices = client.Ok("describe").GetProperty("devices");
        Assert.Equal(1, devices.GetArrayLength());
        Assert.Equal("rng", devices[0].GetProperty("type").GetString());
        Assert.Equal("00:01.0", devices[0].GetProperty("pci").GetString());
        client.Ok("stop", "\"graceful\": false");
        Assert.Equal(0, vmm.WaitForExit(Timeout));
    }

    [Fact]
    public void MissingKvmDeviceIsReported()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("vm.json"), """{ "kvm_device": "/dev/no-such-kvm" }""");
        var (code, _, stderr) = VmmProcess.Run(Timeout, "--config", dir.File("vm.json"), "--control-socket", dir.File("c.sock"));
        Assert.Equal(4, code);
        Assert.Contains("/dev/no-such-kvm", stderr);
        Assert.Contains("does not exist", stderr);
        Assert.False(File.Exists(dir.File("c.sock")));
    }

    [Fact]
    public void UnpermittedKvmDeviceIsReported()
    {
        if (Environment.UserName != "root") return; // the check needs a device node we are not allowed to open
        using var dir = new TempDir();
        // /dev/null is not KVM: the API version ioctl fails, which is reported as unusable.
        File.WriteAllText(dir.File("vm.json"), """{ "kvm_device": "/dev/null" }""");
        var (code, _, stderr) = VmmProcess.Run(Timeout, "--config", dir.File("vm.json"));
        Assert.Equal(4, code);
        Assert.Contains("/dev/null", stderr);
    }

    [Fact]
    public void HelpAndVersion()
    {
        var (code, stdout, _) = VmmProcess.Run(Timeout, "--help");
        Assert.Equal(0, code);
        foreach (var flag in new[] { "--kernel", "--initrd", "--cmdline", "--memory", "--vcpus", "--serial", "--control-socket", "--config" })
            Assert.Contains(flag, stdout);
        Assert.Equal(0, VmmProcess.Run(Timeout, "--version").Code);
    }
}
