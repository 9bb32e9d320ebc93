using System.Text.RegularExpressions;
using KvmPS.Devices;
using KvmPS.Devices.Virtio;
using KvmPS.Engine.Tests.Support;
using KvmPS.Vm;
using Xunit.Abstractions;

namespace KvmPS.Engine.Tests.Devices;

/// <summary>The built-in guest's PCI and virtio-rng drivers against the real engine (in-process KVM).</summary>
public class VirtioRngGuestTests(ITestOutputHelper log)
{
    private (string Output, VmExit Exit, List<string> DeviceLog, bool IoEventFds) Run(string commands, bool rng = true)
    {
        var deviceLog = new List<string>();
        using var run = new GuestRun(new MachineConfig
        {
            Devices = rng ? [new KvmPS.Devices.Virtio.Rng.RngDeviceConfig()] : [],
            Cmdline = $"kvmps.run={commands}",
            DeviceLog = m => { lock (deviceLog) deviceLog.Add(m); },
        });
        var exit = run.RunToExit(TimeSpan.FromSeconds(60));
        bool ioeventfds = run.Machine.Pci[1] is VirtioPciTransport t && t.UsingIoEventFds;
        log.WriteLine(run.Output);
        log.WriteLine($"notifications through ioeventfd: {ioeventfds}");
        lock (deviceLog) foreach (var l in deviceLog) log.WriteLine("device: " + l);
        return (run.Output, exit, deviceLog, ioeventfds);
    }

    private static string RngHex(string output)
    {
        var m = Regex.Match(output, @"rng: ([0-9a-f]{32})\r?\n");
        Assert.True(m.Success, "no 16-byte rng line in the output");
        return m.Groups[1].Value;
    }

    [Fact]
    public void LspciAndRngReadRandomBytes()
    {
        var first = Run("lspci,rng 16,exit 0");
        Assert.Equal(VmExitKind.DebugExit, first.Exit.Kind);
        Assert.Equal(0, first.Exit.DebugExitValue);
        Assert.Contains("pci: 00:00.0 8086:29c0 class 060000", first.Output);
        Assert.Contains("pci: 00:01.0 1af4:1044 class 00ff00", first.Output);
        Assert.Contains("rng: ok", first.Output);
        Assert.True(first.IoEventFds || first.DeviceLog.Any(l => l.Contains("ioeventfd unavailable")), "neither ioeventfds nor the logged fallback");
        string a = RngHex(first.Output);

        var second = Run("rng 16,exit 0");
        Assert.Contains("rng: ok", second.Output);
        string b = RngHex(second.Output);
        Assert.NotEqual(a, b);
        Assert.NotEqual(new string('0', 32), a);
    }

    [Fact]
    public void WithoutRngOnlyTheHostBridgeIsListed()
    {
        var r = Run("lspci,rng 4,exit 0", rng: false);
        Assert.Contains("pci: 00:00.0 8086:29c0 class 060000", r.Output);
        Assert.DoesNotContain("1af4:1044", r.Output);
        Assert.Contains("rng: no virtio-rng device", r.Output);
        Assert.Equal(0, r.Exit.DebugExitValue);
    }

    [Fact]
    public void GarbageBufferSetsNeedsResetAndTheVmKeepsRunning()
    {
        var r = Run("rngbad,rng 8,exit 5");
        Assert.Equal(VmExitKind.DebugExit, r.Exit.Kind);
        Assert.Equal(5, r.Exit.DebugExitValue);
        Assert.Matches(@"rngbad: used=-1 status=0x4f needs_reset", r.Output);
        Assert.Contains(r.DeviceLog, l => l.Contains("outside guest RAM") && l.Contains("needs reset"));
        // After a reset the driver re-initialises the device and it works again.
        Assert.Contains("rng: ok", r.Output);
    }
}
