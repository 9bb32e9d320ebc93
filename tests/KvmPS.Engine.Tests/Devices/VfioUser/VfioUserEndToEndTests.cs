using System.Text.RegularExpressions;
using KvmPS.Engine.Tests.Support;
using Xunit.Abstractions;

namespace KvmPS.Engine.Tests.Devices.VfioUser;

/// <summary>
/// The published kvmps-vmm (sandbox on, its default) with <c>--device vfio-user,socket=PATH</c> against the project's
/// vfio-user test device server, driven by the built-in guest's <c>vfu</c> commands (guest/README.md).
/// </summary>
public class VfioUserEndToEndTests(ITestOutputHelper log)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(120);

    private VmmProcess StartVm(VfioUserTestServer server, TempDir dir, string commands, out string control)
    {
        control = dir.File("c.sock");
        return new VmmProcess(["--device", $"vfio-user,socket={server.SocketPath}", "--control-socket", control,
            "--cmdline", $"kvmps.run={commands}"], redirectStdin: false);
    }

    private void Dump(VmmProcess vmm, VfioUserTestServer server)
    {
        log.WriteLine("stdout:\n" + vmm.Stdout);
        log.WriteLine("stderr:\n" + vmm.Stderr);
        log.WriteLine("server:\n" + server.Stderr);
    }

    private static string Diagnostics(VmmProcess vmm, VfioUserTestServer server) =>
        $"stdout:\n{vmm.Stdout}\nstderr:\n{vmm.Stderr}\nserver:\n{server.Stderr}";

    private static void StopCleanly(VmmProcess vmm, string control)
    {
        using (var client = new ControlClient(control)) client.Ok("stop", "\"graceful\": false");
        Assert.Equal(0, vmm.WaitForExit(Timeout));
    }

    [Fact]
    public void GuestDrivesDmaInterruptsAndTheMmapBarThenStopsCleanly()
    {
        using var dir = new TempDir();
        using var server = new VfioUserTestServer();
        using var vmm = StartVm(server, dir, "lspci,vfu info,vfu test 12,vfu bar,vfu bar,vfu info,pio 1", out string control);
        try
        {
            Assert.True(vmm.WaitForStdout("pio: done 1", Timeout), Diagnostics(vmm, server));
            string o = vmm.Stdout;
            Assert.Matches(@"pci: 00:[0-9a-f]{2}\.0 1b36:7f5e class ff0000", o);
            Assert.Contains("vfu: test rounds=12 ok=12 irqs=12 completed=12", o);
            Assert.Equal(3, Regex.Matches(o, "vfu: ok").Count); // the test and both BAR checks
            Assert.Equal(2, Regex.Matches(o, @"vfu: bar2 0x[0-9a-f]+ sum=(0x[0-9a-f]{8}) device=\1 readback=ok").Count);
            // The engine resets the device when it attaches it (the server counts VFIO_USER_DEVICE_RESETs).
            Assert.Matches(@"vfu: magic=0x30554656 version=1 completed=0 irqs=0 resets=1", o);
            Assert.Matches(@"vfu: magic=0x30554656 version=1 completed=12 irqs=12 resets=1 scratch=0x00000000 guest_irqs=12", o);
            // The guest unmasks all four vectors before enabling MSI-X: all four go from the server straight into KVM.
            Assert.Contains("MSI-X enabled: 4 of 4 vectors delivered by KVM (irqfd)", vmm.Stderr);

            using (var client = new ControlClient(control))
            {
                var devices = client.Ok("describe").GetProperty("devices");
                Assert.Contains(devices.EnumerateArray(), d => d.GetProperty("type").GetString() == "vfio-user"
                    && d.GetProperty("socket").GetString() == server.SocketPath);
                client.Ok("stop", "\"graceful\": false");
            }
            Assert.Equal(0, vmm.WaitForExit(Timeout));
            // The server saw the client go and still serves.
            Assert.True(SpinWait.SpinUntil(() => server.Stderr.Contains("client closed the connection"), 10000), server.Stderr);
            Assert.False(server.Process.HasExited);
        }
        finally { Dump(vmm, server); }
    }

    [Fact]
    public void GuestMovesBarsAndTheDeviceFollows()
    {
        using var dir = new TempDir();
        using var server = new VfioUserTestServer();
        // Both targets are in the 32-bit PCI window (0xc0000000 up), far above what start-up assigns, and aligned.
        using var vmm = StartVm(server, dir,
            "vfu info,vfu move 2 d8000000,vfu bar,vfu move 0 d8100000,vfu test 3,vfu info,vfu move 2 d8200000,vfu bar,pio 2",
            out string control);
        try
        {
            Assert.True(vmm.WaitForStdout("pio: done 2", Timeout), Diagnostics(vmm, server));
            string o = vmm.Stdout;
            Assert.Matches(@"vfu: bar2 moved 0x[0-9a-f]+ -> 0xd8000000", o);
            Assert.Matches(@"vfu: bar0 moved 0x[0-9a-f]+ -> 0xd8100000", o);
            Assert.Matches(@"vfu: bar2 moved 0xd8000000 -> 0xd8200000", o);
            Assert.Matches(@"vfu: bar2 0xd8000000 sum=(0x[0-9a-f]{8}) device=\1 readback=ok", o);
            Assert.Matches(@"vfu: bar2 0xd8200000 sum=(0x[0-9a-f]{8}) device=\1 readback=ok", o);
            Assert.Matches(@"vfu: [0-9a-f:.]+ bar0=0xd8100000 bar2=0xd8000000", o);
            Assert.Contains("vfu: test rounds=3 ok=3 irqs=3 completed=3", o);
            Assert.DoesNotContain("FAILED", o);
            StopCleanly(vmm, control);
        }
        finally { Dump(vmm, server); }
    }

    [Fact]
    public void GarbageInMsixEntriesIsNotDeliveredAndCrashesNothing()
    {
        using var dir = new TempDir();
        using var server = new VfioUserTestServer();
        using var vmm = StartVm(server, dir, "vfu msixbad,vfu info,vfu test 4,pio 3", out string control);
        try
        {
            Assert.True(vmm.WaitForStdout("pio: done 3", Timeout), Diagnostics(vmm, server));
            string o = vmm.Stdout;
            Assert.Contains("vfu: msixbad status=1 data=ok", o); // the device did its work
            // The device raised its vector, but the garbage message reached no vector of the guest.
            Assert.Matches(@"vfu: magic=0x30554656 version=1 completed=1 irqs=1 resets=1 scratch=0x00000000 guest_irqs=0", o);
            Assert.Contains("vfu: test rounds=4 ok=4 irqs=4 completed=4", o); // reprogrammed entries work again
            StopCleanly(vmm, control);
        }
        finally { Dump(vmm, server); }
    }

    [Fact]
    public void ServerCrashMidTestFailsTheDeviceAndTheVmKeepsRunning()
    {
        using var dir = new TempDir();
        using var server = new VfioUserTestServer("--crash-on-dma", "3");
        using var vmm = StartVm(server, dir, "vfu test 6,vfu info,lspci,pio 10", out string control);
        try
        {
            Assert.True(vmm.WaitForStdout("pio: done 10", Timeout), Diagnostics(vmm, server));
            Assert.True(server.Process.WaitForExit(10000));
            Assert.Equal(3, server.Process.ExitCode);
            string o = vmm.Stdout;
            Assert.Contains("vfu: device failed at round 2", o);
            Assert.Contains("vfu: test rounds=6 ok=2 irqs=2", o);
            Assert.Contains("vfu: FAILED", o);
            // The next command finds no device: a failed function reads as all-ones, config space included, like a
            // device removed by surprise, so the guest's PCI scan no longer lists it.
            Assert.Contains("vfu: no device 1b36:7f5e", o);
            Assert.DoesNotContain("1b36:7f5e class", o);
            Assert.Contains("pci: 00:00.0 8086:29c0", o);
            // The VMM says which device failed and why, once (not once per guest access). Its stderr is read apart from
            // the guest's stdout, so the line may come in after "pio: done" (seen once: the assertion ran first).
            Assert.True(SpinWait.SpinUntil(() => vmm.Stderr.Contains("reads as all-ones and ignores writes"), 10000), vmm.Stderr);
            Assert.Contains(server.SocketPath, vmm.Stderr);
            Assert.Single(Regex.Matches(vmm.Stderr, "reads as all-ones and ignores writes"));
            Assert.False(vmm.HasExited);
            StopCleanly(vmm, control);
        }
        finally { Dump(vmm, server); }
    }

    [Fact]
    public void GuestUsesIntxWithResampleAndSwitchesToMsixAndBack()
    {
        using var dir = new TempDir();
        using var server = new VfioUserTestServer("--intx");
        // INTx: each completion's interrupt needs the previous one's EOI to have unmasked the line (KVM's resample
        // eventfd), so six rounds with six interrupts prove the whole loop. Then MSI-X (INTx off at the device), then
        // INTx again (MSI-X off).
        using var vmm = StartVm(server, dir, "vfu test 6 intx,vfu test 3,vfu test 4 intx,vfu info,pio 4", out string control);
        try
        {
            Assert.True(vmm.WaitForStdout("pio: done 4", Timeout), Diagnostics(vmm, server));
            string o = vmm.Stdout;
            var pin = Regex.Match(o, @"vfu: intx pin A gsi (\d+)");
            Assert.True(pin.Success, o);
            Assert.Contains($"INTx pin A on GSI {pin.Groups[1].Value} (KVM irqfd with resample)", vmm.Stderr);
            Assert.Matches(@"vfu: test rounds=6 ok=6 irqs=6 completed=6 checksum=0x[0-9a-f]{8} intx", o);
            Assert.Matches(@"vfu: test rounds=3 ok=3 irqs=3 completed=3 checksum=0x[0-9a-f]{8}\n", o.Replace("\r", ""));
            Assert.Matches(@"vfu: test rounds=4 ok=4 irqs=4 completed=4 checksum=0x[0-9a-f]{8} intx", o);
            // Every signal the device sent reached the guest, and no completion went without one. The device may
            // signal INTx once more than it completed (a level-triggered line allows it; drivers take it as
            // spurious), never fewer. Traced 2026-12-06 with the server logging each INTx step: the extra one is a
            // re-fire on the very first completion after the guest routed the pin, because the unmask (KVM's resample
            // eventfd) reached the server after the raise but before the handler's IRQ_ACK; later rounds and the
            // second INTx session were clean in that run. Which EOI signalled that resample is not found yet; under
            // load it happens on more rounds (17 signals seen once), so the bound is one re-fire per INTx completion.
            var info = Regex.Match(o, @"completed=13 irqs=(\d+) resets=1 scratch=0x00000000 guest_irqs=(\d+)");
            Assert.True(info.Success, o);
            Assert.Equal(info.Groups[1].Value, info.Groups[2].Value);
            Assert.InRange(int.Parse(info.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture), 13, 13 + 10);
            Assert.DoesNotContain("FAILED", o);
            StopCleanly(vmm, control);
        }
        finally { Dump(vmm, server); }
    }

    [Fact]
    public void GuestDrivesDmaWithMsiMultipleMessagesAndSwitchesToMsixAndBack()
    {
        using var dir = new TempDir();
        using var server = new VfioUserTestServer();
        // MSI with four messages (each completion must arrive on the vector it asked for: data | n), then MSI-X (MSI off
        // at the device first), then MSI again (MSI-X off).
        using var vmm = StartVm(server, dir, "vfu test 8 msi,vfu test 3,vfu test 4 msi,vfu info,pio 5", out string control);
        try
        {
            Assert.True(vmm.WaitForStdout("pio: done 5", Timeout), Diagnostics(vmm, server));
            string o = vmm.Stdout.Replace("\r", "");
            Assert.Equal(2, Regex.Matches(o, "vfu: msi vectors=4 64-bit maskable enabled=1").Count);
            Assert.Matches(@"vfu: test rounds=8 ok=8 irqs=8 completed=8 checksum=0x[0-9a-f]{8} msi", o);
            Assert.Matches(@"vfu: test rounds=3 ok=3 irqs=3 completed=3 checksum=0x[0-9a-f]{8}\n", o);
            Assert.Matches(@"vfu: test rounds=4 ok=4 irqs=4 completed=4 checksum=0x[0-9a-f]{8} msi", o);
            Assert.Matches(@"completed=15 irqs=15 resets=1 scratch=0x00000000 guest_irqs=15", o);
            Assert.DoesNotContain("wrong MSI vector", o);
            Assert.DoesNotContain("FAILED", o);
            // The guest programs the capability before enabling it: all four messages go straight into KVM.
            Assert.Equal(2, Regex.Matches(vmm.Stderr, @"MSI enabled: 4 of 4 vectors delivered by KVM \(irqfd\)").Count);
            Assert.Contains("MSI-X enabled: 4 of 4 vectors delivered by KVM (irqfd)", vmm.Stderr);
            StopCleanly(vmm, control);
        }
        finally { Dump(vmm, server); }
    }

    [Fact]
    public void GuestRebootResetsTheDevice()
    {
        using var dir = new TempDir();
        using var server = new VfioUserTestServer();
        // Every boot runs the same commands: note the state, write SCRATCH, reboot. The second boot must find a
        // device that was reset (RESET_COUNT up by one, SCRATCH clear) and still works (DMA with MSI-X into the new
        // boot's RAM, which the VMM mapped for the device in place of the old boot's).
        // Jailed (the default): the server's socket is root's alone, so the jailed VMM cannot connect to it again
        // ("cannot connect: Permission denied"); it keeps the connection it made as root before its jail and resets
        // the device over it.
        File.SetUnixFileMode(server.SocketPath, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        using var vmm = StartVm(server, dir, "vfu info,vfu scratch c0ffee,vfu test 2,reboot", out string control);
        try
        {
            Assert.True(vmm.WaitForStdout("resets=2", Timeout), Diagnostics(vmm, server));
            Assert.True(SpinWait.SpinUntil(() => Regex.Matches(vmm.Stdout, "vfu: test rounds=2 ok=2 irqs=2 completed=2").Count >= 2, Timeout),
                Diagnostics(vmm, server));
            string o = vmm.Stdout;
            Assert.Matches(@"completed=0 irqs=0 resets=1 scratch=0x00000000", o);
            Assert.Contains("vfu: scratch=0x00c0ffee", o);
            Assert.Matches(@"completed=0 irqs=0 resets=2 scratch=0x00000000 guest_irqs=0", o); // the second boot's view
            // One connection for both boots: the reboot neither closed it nor made another.
            Assert.Single(Regex.Matches(server.Stderr, "client connected"));
            Assert.DoesNotContain("client closed the connection", server.Stderr);
            StopCleanly(vmm, control);
        }
        finally { Dump(vmm, server); }
    }

    [Theory]
    [InlineData("--bad-version", "9.9")]
    [InlineData("--oversized-reply", "")]
    [InlineData("--malformed-reply", "")]
    [InlineData("--crash-after 4", "closed the connection")] // dies while the VMM sets the device up
    public void MisbehavingServerIsAClearStartErrorNotACrash(string knob, string detail)
    {
        using var server = new VfioUserTestServer(knob.Split(' '));
        var (code, stdout, stderr) = VmmProcess.Run(Timeout, "--device", $"vfio-user,socket={server.SocketPath}", "--serial", "none");
        log.WriteLine($"exit {code}\nstdout:\n{stdout}\nstderr:\n{stderr}\nserver:\n{server.Stderr}");
        Assert.NotEqual(0, code);
        Assert.True(code < 128, $"kvmps-vmm died of a signal ({code})");
        Assert.Contains(server.SocketPath, stderr);
        if (detail.Length > 0) Assert.Contains(detail, stderr);
        Assert.DoesNotContain("Unhandled exception", stderr);
    }

    [Fact]
    public void MissingSocketIsAClearStartError()
    {
        using var dir = new TempDir();
        string path = dir.File("nobody.sock");
        var (code, _, stderr) = VmmProcess.Run(Timeout, "--device", $"vfio-user,socket={path}", "--serial", "none");
        Assert.NotEqual(0, code);
        Assert.True(code < 128, $"kvmps-vmm died of a signal ({code})");
        Assert.Contains(path, stderr);
        Assert.DoesNotContain("Unhandled exception", stderr);
    }
}
