using System.Diagnostics;
using KvmPS.Engine.Tests.Support;
using Xunit.Abstractions;

namespace KvmPS.Engine.Tests.RealLinux;

/// <summary>
/// ACPI CPU hot-plug with Linux as the reference client (docs/acpi.md): its ACPI processor driver reads the DSDT's
/// processor objects at boot, and on <c>vcpu.set</c> the GPE runs the scan, Linux's hot-plug handler evaluates the
/// new processor's <c>_STA</c>/<c>_MAT</c> and makes the CPU present, and onlining it starts the vCPU through INIT/SIPI.
/// </summary>
[Trait("Category", "RealLinux")]
[Collection(RealLinuxCollection.Name)]
public class CpuHotplugTests(ITestOutputHelper log)
{
    private static readonly TimeSpan GuestActs = TimeSpan.FromMinutes(3);

    [Fact]
    public void AHotAddedCpuBecomesPresentAndGoesOnline()
    {
        using var dir = new TempDir();
        using var guest = new LinuxGuest(dir, 1, "256M", null, "--max-vcpus", "4");
        log.WriteLine($"boot to the agent: {guest.BootTime.TotalSeconds:F1} s");
        var cpus = LinuxGuest.Fields(guest.Run("cpus"), "cpus");
        Assert.Equal("0", cpus["online"]);
        Assert.Equal("0", cpus["present"]);
        Assert.Equal("0-3", cpus["possible"]); // the online-capable MADT entries

        using (var control = new ControlClient(guest.ControlSocket))
        {
            // Beyond the maximum: refused naming it, nothing changes.
            var refused = control.Request("vcpu.set", "\"count\": 5");
            Assert.False(refused.GetProperty("ok").GetBoolean());
            Assert.Contains("maximum 4", refused.ToString());

            var sw = Stopwatch.StartNew();
            var set = control.Ok("vcpu.set", "\"count\": 2");
            Assert.Equal(2, set.GetProperty("present").GetInt32());
            cpus = WaitFor(guest, c => c["present"] == "0-1");
            log.WriteLine($"vcpu.set to CPU 1 present in Linux: {sw.Elapsed.TotalSeconds:F1} s");
            Assert.Equal("0", cpus["online"]); // present, not yet online: Linux leaves that to user space

            sw.Restart();
            guest.Run("write /sys/devices/system/cpu/cpu1/online 1");
            cpus = WaitFor(guest, c => c["online"] == "0-1");
            log.WriteLine($"CPU 1 online: {sw.Elapsed.TotalSeconds:F1} s");
            Assert.Equal("2", cpus["count"]);

            var status = control.Ok("status");
            Assert.Equal(2, status.GetProperty("vcpus").GetArrayLength());
        }

        RealLinuxTests.AssertClean(RealLinuxTests.KernelLog(guest));
        guest.Run("poweroff");
        Assert.Equal(0, guest.WaitForExit(TimeSpan.FromSeconds(90)));
    }

    private static Dictionary<string, string> WaitFor(LinuxGuest guest, Func<Dictionary<string, string>, bool> done)
    {
        var deadline = DateTime.UtcNow + GuestActs;
        while (true)
        {
            var cpus = LinuxGuest.Fields(guest.Run("cpus"), "cpus");
            if (done(cpus)) return cpus;
            if (DateTime.UtcNow > deadline) Assert.Fail($"the guest did not get there within {GuestActs}: {string.Join(' ', cpus)}\n{guest.Diagnostics()}");
            Thread.Sleep(1000);
        }
    }
}
