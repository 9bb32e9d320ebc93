using System.Diagnostics;
using KvmPS.Engine.Tests.Support;
using Xunit.Abstractions;

namespace KvmPS.Engine.Tests.RealLinux;

/// <summary>
/// ACPI CPU hot-plug with Linux as the reference client (docs/acpi.md): its ACPI processor driver reads the DSDT's
/// processor objects at boot, and on <c>vcpu.set</c> the GPE runs the scan, Linux's hot-plug handler evaluates the
/// new processor's <c>_STA</c>/<c>_MAT</c> and makes the CPU present, and onlining it starts the vCPU through INIT/SIPI.
/// The same boot ends with the agent's poweroff (the one-vCPU boot check: a boot costs minutes here).
/// </summary>
[Trait("Category", "RealLinux")]
[Collection(RealLinuxCollection.Name)]
public class CpuHotplugTests(ITestOutputHelper log)
{
    private static readonly TimeSpan GuestActs = TimeSpan.FromMinutes(3);

    [Fact]
    public void AHotAddedCpuGoesOnlineIsEjectedOnRemovalAndComesBack()
    {
        using var dir = new TempDir();
        using var guest = new LinuxGuest(dir, 1, "256M", null, "--max-vcpus", "4");
        log.WriteLine($"boot to the agent: {guest.BootTime.TotalSeconds:F1} s");
        var cpus = LinuxGuest.Fields(guest.Run("cpus"), "cpus");
        Assert.Equal("0", cpus["online"]);
        Assert.Equal("0", cpus["present"]);
        Assert.Equal("0-3", cpus["possible"]); // the online-capable MADT entries
        Assert.Equal("1", cpus["count"]);

        using (var control = new ControlClient(guest.ControlSocket))
        {
            // Beyond the maximum: refused naming it, nothing changes.
            var refused = control.Request("vcpu.set", "\"count\": 5");
            Assert.False(refused.GetProperty("ok").GetBoolean());
            Assert.Contains("maximum 4", refused.ToString());

            var sw = Stopwatch.StartNew();
            var set = control.Ok("vcpu.set", "\"count\": 2");
            Assert.Equal(2, set.GetProperty("vcpus").GetInt32());
            Assert.Equal(4, set.GetProperty("max_vcpus").GetInt32());
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

            // Back to one: Linux takes CPU 1 offline on the eject request and runs _EJ0.
            sw.Restart();
            control.Ok("vcpu.set", "\"count\": 1");
            cpus = WaitFor(guest, c => c["present"] == "0" && c["online"] == "0");
            Assert.Equal("1", cpus["count"]);
            WaitForVmm(control, 1);
            log.WriteLine($"vcpu.set 1 to CPU 1 ejected: {sw.Elapsed.TotalSeconds:F1} s");

            // And added again: the parked vCPU comes back through INIT/SIPI.
            control.Ok("vcpu.set", "\"count\": 2");
            WaitFor(guest, c => c["present"] == "0-1");
            guest.Run("write /sys/devices/system/cpu/cpu1/online 1");
            cpus = WaitFor(guest, c => c["online"] == "0-1");
            Assert.Equal("2", cpus["count"]);
        }

        // With a second CPU online the emulated console is slower still: klog gets more time than the default.
        RealLinuxTests.AssertClean(RealLinuxTests.KernelLog(guest, LinuxGuest.CommandTimeout));
        guest.Run("poweroff");
        Assert.Equal(0, guest.WaitForExit(TimeSpan.FromSeconds(90)));
    }

    /// <summary>Polls vcpu.set with the count already asked for (no new event) until the VMM reports that many present.</summary>
    private static void WaitForVmm(ControlClient control, int vcpus)
    {
        var deadline = DateTime.UtcNow + GuestActs;
        int present;
        while ((present = control.Ok("vcpu.set", $"\"count\": {vcpus}").GetProperty("vcpus").GetInt32()) != vcpus)
        {
            if (DateTime.UtcNow > deadline) Assert.Fail($"the VMM still has {present} vCPUs present, not {vcpus}");
            Thread.Sleep(500);
        }
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
