using System.Diagnostics;
using KvmPS.Engine.Tests.Support;
using Xunit.Abstractions;

namespace KvmPS.Engine.Tests.RealLinux;

/// <summary>
/// Hot-plug with Linux as the reference client. CPUs through ACPI (docs/acpi.md): its ACPI processor driver reads the DSDT's
/// processor objects at boot, and on <c>vcpu.set</c> the GPE runs the scan, Linux's hot-plug handler evaluates the
/// new processor's <c>_STA</c>/<c>_MAT</c> and makes the CPU present, and onlining it starts the vCPU through INIT/SIPI.
/// Memory through virtio-mem (docs/devices.md): Linux's virtio_mem driver plugs the blocks <c>memory.set</c> asks for
/// and onlines them (<c>memhp_default_state=online</c> on the command line), and unplugs on a smaller request.
/// The same boot ends with the agent's poweroff (the one-vCPU boot check: a boot costs minutes here).
/// </summary>
[Trait("Category", "RealLinux")]
[Collection(RealLinuxCollection.Name)]
public class CpuHotplugTests(ITestOutputHelper log)
{
    private static readonly TimeSpan GuestActs = TimeSpan.FromMinutes(3);

    [Fact]
    public void CpusAndVirtioMemMemoryArePluggedAndUnpluggedLive()
    {
        using var dir = new TempDir();
        using var guest = new LinuxGuest(dir, 1, "256M", null, "--max-vcpus", "4", "--max-memory", "512M");
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

            CheckVirtioMem(guest, control);
        }

        // With a second CPU online the emulated console is slower still: klog gets more time than the default.
        RealLinuxTests.AssertClean(RealLinuxTests.KernelLog(guest, LinuxGuest.CommandTimeout));
        guest.Run("poweroff");
        Assert.Equal(0, guest.WaitForExit(TimeSpan.FromSeconds(90)));
    }

    private void CheckVirtioMem(LinuxGuest guest, ControlClient control)
    {
        const long Mib = 1L << 20;
        var memory = control.Ok("memory.get");
        Assert.True(memory.GetProperty("driver_ok").GetBoolean(), $"Linux's virtio_mem driver did not take the device: {memory}");
        long before = RealLinuxTests.MemTotalKiB(guest);

        var sw = Stopwatch.StartNew();
        var refused = control.Request("memory.set", $"\"bytes\": {1024 * Mib}");
        Assert.False(refused.GetProperty("ok").GetBoolean());
        control.Ok("memory.set", $"\"bytes\": {512 * Mib}");
        WaitForPlugged(control, plugged => plugged == 256 * Mib);
        long grown = WaitForMemTotal(guest, kib => kib >= before + 250 * 1024);
        log.WriteLine($"memory.set 512 MiB: plugged and online in {sw.Elapsed.TotalSeconds:F1} s (MemTotal {before} -> {grown} KiB)");

        // Back to the boot size: Linux offlines and unplugs what it can; at least half is given back here.
        sw.Restart();
        control.Ok("memory.set", $"\"bytes\": {256 * Mib}");
        long left = WaitForPlugged(control, plugged => plugged <= 128 * Mib);
        log.WriteLine($"memory.set 256 MiB: {left / Mib} MiB still plugged after {sw.Elapsed.TotalSeconds:F1} s");
        Assert.True(RealLinuxTests.MemTotalKiB(guest) < grown);
        Assert.Equal(0, control.Ok("memory.get").GetProperty("error_responses").GetInt64());
    }

    private static long WaitForPlugged(ControlClient control, Func<long, bool> done)
    {
        var deadline = DateTime.UtcNow + GuestActs;
        while (true)
        {
            var memory = control.Ok("memory.get");
            long plugged = memory.GetProperty("plugged_bytes").GetInt64();
            if (done(plugged)) return plugged;
            if (DateTime.UtcNow > deadline) Assert.Fail($"virtio-mem did not get there within {GuestActs}: {memory}");
            Thread.Sleep(1000);
        }
    }

    private static long WaitForMemTotal(LinuxGuest guest, Func<long, bool> done)
    {
        var deadline = DateTime.UtcNow + GuestActs;
        while (true)
        {
            long kib = RealLinuxTests.MemTotalKiB(guest);
            if (done(kib)) return kib;
            if (DateTime.UtcNow > deadline) Assert.Fail($"MemTotal is {kib} KiB after {GuestActs}\n{guest.Diagnostics()}");
            Thread.Sleep(1000);
        }
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
