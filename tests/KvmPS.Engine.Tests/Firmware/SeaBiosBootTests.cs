using System.Diagnostics;
using System.Text;
using KvmPS.Devices.Config;
using KvmPS.Devices.Virtio.Block;
using KvmPS.Engine.Tests.Support;
using KvmPS.Vm;
using KvmPS.Vm.Boot;
using Xunit.Abstractions;

namespace KvmPS.Engine.Tests.Firmware;

/// <summary>A fact that needs Debian's SeaBIOS (/usr/share/seabios/bios-256k.bin) and /dev/kvm.</summary>
public sealed class SeaBiosFactAttribute : FactAttribute
{
    public SeaBiosFactAttribute()
    {
        if (!File.Exists(FirmwareImage.SeaBiosPath))
            Skip = $"{FirmwareImage.SeaBiosPath} is missing (install it with 'apt-get install -y seabios').";
        else if (!File.Exists("/dev/kvm"))
            Skip = "/dev/kvm is missing.";
    }
}

/// <summary>SeaBIOS booting on the VMM: fw_cfg, firmware mapping, ACPI hand-over, and a disk boot over virtio-blk.</summary>
public class SeaBiosBootTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    /// <summary>The debug console (SeaBIOS's log), each line stamped with the milliseconds since the VM was created.</summary>
    private sealed class DebugLog
    {
        private readonly StringBuilder _text = new(), _stamped = new();
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private bool _lineStart = true;
        public void Write(ReadOnlySpan<byte> data)
        {
            lock (_text)
                foreach (byte b in data)
                {
                    if (_lineStart) _stamped.Append($"[{_clock.ElapsedMilliseconds,6} ms] ");
                    _text.Append((char)b);
                    _stamped.Append((char)b);
                    _lineStart = b == '\n';
                }
        }
        public override string ToString() { lock (_text) return _text.ToString(); }
        public string Stamped { get { lock (_text) return _stamped.ToString(); } }
    }

    private static bool WaitFor(Func<bool> condition, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline) { if (condition()) return true; Thread.Sleep(10); }
        return condition();
    }

    [SeaBiosFact]
    public void SeaBiosWithoutDiskReachesNoBootableDevice()
    {
        var log = new DebugLog();
        var config = new MachineConfig { FirmwarePath = FirmwareImage.SeaBiosAlias, VcpuCount = 2, DebugConOutput = log.Write };
        var sw = Stopwatch.StartNew();
        using var run = new GuestRun(config);
        run.Machine.Start();
        bool reached = WaitFor(() => run.Output.Contains("No bootable device") || run.Machine.Exited.IsCompleted, Timeout);
        output.WriteLine($"reached 'No bootable device' after {sw.ElapsedMilliseconds} ms");
        output.WriteLine("--- serial ---\n" + run.Output + "\n--- debugcon ---\n" + log.Stamped);
        Assert.True(reached && !run.Machine.Exited.IsCompleted, $"SeaBIOS did not reach 'No bootable device'; exit: {(run.Machine.Exited.IsCompleted ? run.Machine.Exited.Result : null)}");
        string debug = log.ToString();
        Assert.Contains("SeaBIOS (version", debug);
        Assert.Contains("SeaBIOS (version", run.Output);   // the banner on COM1 too (etc/sercon-port)
        Assert.Contains("Found QEMU fw_cfg", debug);
        Assert.Contains("fw_cfg DMA interface supported", debug);
        Assert.Contains("Found 2 cpu(s)", debug);           // both vCPUs answered SeaBIOS's INIT-SIPI
        Assert.Contains("qemu/e820: addr 0x0000000000000000 len 0x0000000010000000 [RAM]", debug); // etc/e820
        Assert.DoesNotContain("WARNING", debug);            // e.g. a failed table-loader command
        Assert.Contains("table(50434146)=", debug);         // SeaBIOS found our FADT ("FACP") through the loaded XSDT
        Assert.Contains("ACPI: parse DSDT", debug);
        run.Machine.Stop("test done");
    }

    [SeaBiosFact]
    public void BootSectorBootsFromVirtioBlockThroughSeaBios()
    {
        string dir = Directory.CreateTempSubdirectory("kvmps-seabios-").FullName;
        try
        {
            string disk = Path.Combine(dir, "disk.img");
            SeaBiosBootSector.WriteImage(disk);
            var log = new DebugLog();
            var config = new MachineConfig
            {
                FirmwarePath = FirmwareImage.SeaBiosAlias,
                DebugConOutput = log.Write,
                Devices = [new BlockDeviceConfig { Path = disk }],
            };
            var sw = Stopwatch.StartNew();
            VmExit exit;
            string serial;
            using (var run = new GuestRun(config))
            {
                exit = run.RunToExit(Timeout);
                serial = run.Output;
            }
            long ours = sw.ElapsedMilliseconds;
            output.WriteLine($"kvmps: boot sector ran and exited after {ours} ms (VM create to debug exit): {exit.Kind} {exit.Reason}");
            output.WriteLine("--- serial ---\n" + serial + "\n--- debugcon ---\n" + log.Stamped);
            Assert.True(exit.Kind == VmExitKind.DebugExit, $"expected a debug exit, got {exit.Kind}: {exit.Reason}");
            Assert.Equal(SeaBiosBootSector.ExitValue, exit.DebugExitValue);
            Assert.Contains(SeaBiosBootSector.Message, serial);
            Assert.Contains("Booting from Hard Disk", log.ToString());
            RunOnQemuForComparison(disk, dir, ours);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    /// <summary>The same disk on QEMU (if installed), for the timing comparison in the test output; never fails the test.</summary>
    private void RunOnQemuForComparison(string disk, string dir, long oursMs)
    {
        const string qemu = "/usr/bin/qemu-system-x86_64";
        if (!File.Exists(qemu)) { output.WriteLine("qemu: not installed, no comparison"); return; }
        string serial = Path.Combine(dir, "qemu-serial.txt");
        var psi = new ProcessStartInfo(qemu) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "-M", "pc", "-accel", "kvm", "-display", "none", "-serial", $"file:{serial}",
                     "-drive", $"file={disk},if=virtio,format=raw", "-device", "isa-debug-exit,iobase=0xf4,iosize=1" })
            psi.ArgumentList.Add(a);
        var sw = Stopwatch.StartNew();
        using var p = Process.Start(psi)!;
        if (!p.WaitForExit(60_000)) { p.Kill(); output.WriteLine("qemu: did not exit within 60 s"); return; }
        output.WriteLine($"qemu: exited with status {p.ExitCode} after {sw.ElapsedMilliseconds} ms (kvmps: {oursMs} ms); " +
                         $"serial: {(File.Exists(serial) ? File.ReadAllText(serial).Trim() : "(none)")}; stderr: {p.StandardError.ReadToEnd().Trim()}");
    }
}
