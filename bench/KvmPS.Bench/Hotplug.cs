using System.Diagnostics;

namespace KvmPS.Bench;

/// <summary>
/// Figures 9: ACPI CPU and PCI hot-plug on a running VM, kvmps-vmm alone (no peer: QEMU's CPU hot-plug interface is its own
/// register block, which the built-in guest does not drive). The built-in guest idle at its prompt, 1 of at most 2
/// vCPUs present. 9a: control <c>vcpu.set {"count": 2}</c> sent → the guest's <c>acpi: cpu 1 online</c> line (the
/// SCI, its scan of the hot-plug controller, INIT/SIPI, the new CPU running). 9b: <c>vcpu.set {"count": 1}</c> → the
/// guest's <c>acpi: cpu 1 ejected</c> (the CPU parked, then the eject written). Both in the same VM, alternately.
/// 9c/9d: ACPI PCI hot-plug of a virtio-blk disk in the same VM: <c>device.add</c> sent → the guest's
/// <c>pci: slot NN added 1af4:1042 driver ready</c>; <c>device.remove</c> → <c>pci: slot NN ejected</c>.
/// </summary>
public static class Hotplug
{
    public const string Method = "9. the built-in guest idle at its prompt, 256 MiB, `--vcpus 1 --max-vcpus 2`; kvmps-vmm only (QEMU's CPU hot-plug is a register block of its own that the built-in guest does not drive, so there is no peer). 9a: control `vcpu.set {\"count\": 2}` sent → the guest's `acpi: cpu 1 online` on the console: the GPE's SCI, the guest's scan of the hot-plug controller, INIT/SIPI and the new CPU reporting in. 9b: `vcpu.set {\"count\": 1}` sent → `acpi: cpu 1 ejected`: the guest parks the CPU and writes the eject. One VM, add and remove alternately, the first pair not counted. 9c: control `device.add` of a virtio-blk disk (a 64 MiB raw image) sent → the guest's `pci: slot NN added 1af4:1042 driver ready`: the GPE's SCI, the guest's scan of the PCI hot-plug registers, and its virtio-blk driver up on the new function (what `Add-KvmDisk` on a running VM waits for, less management's own work). 9d: `device.remove` sent → `pci: slot NN ejected`: the guest resets the device and writes the eject; the VMM then closes the image. Same VM, alternately, first pair not counted.";

    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    public static IEnumerable<FigureResult> Measure(string vmm, string work, int runs)
    {
        Console.Error.WriteLine("figure 9: vCPU and disk hot-add and removal");
        string sock = Path.Combine(work, "hp.sock");
        File.Delete(sock);
        var clock = Stopwatch.StartNew();
        var p = Host.Start(vmm, ["--vcpus", "1", "--max-vcpus", "2", "--memory", "256M", "--control-socket", sock]);
        var add = new List<double>();
        var remove = new List<double>();
        var diskAdd = new List<double>();
        var diskRemove = new List<double>();
        try
        {
            Host.WaitForOutput(p, "ready", clock, Timeout);
            using var control = LineClient.WaitFor(sock, clock, Timeout);
            for (int i = 0; i <= runs; i++)
            {
                double a = Change(p, control, 2, "acpi: cpu 1 online");
                double r = Change(p, control, 1, "acpi: cpu 1 ejected");
                if (i == 0) continue; // warm-up pair
                add.Add(a);
                remove.Add(r);
            }
            string disk = Path.Combine(work, "hp-disk.raw");
            using (var f = File.Create(disk)) f.SetLength(64 << 20);
            for (int i = 0; i <= runs; i++)
            {
                var sw = Stopwatch.StartNew();
                string pci;
                using (var reply = control.Request($"{{\"request\":\"device.add\",\"device\":{{\"type\":\"block\",\"path\":\"{disk}\"}}}}"))
                {
                    if (!reply.RootElement.GetProperty("ok").GetBoolean()) throw new InvalidOperationException($"device.add: {reply.RootElement}");
                    pci = reply.RootElement.GetProperty("result").GetProperty("device").GetProperty("pci").GetString()!;
                }
                string slot = pci.Split(':', '.')[1];
                Host.WaitForOutput(p, $"pci: slot {slot} added 1af4:1042 driver ready", sw, Timeout);
                double a = sw.Elapsed.TotalMilliseconds;
                sw.Restart();
                using (var reply = control.Request($"{{\"request\":\"device.remove\",\"pci\":\"{pci}\"}}"))
                    if (!reply.RootElement.GetProperty("ok").GetBoolean()) throw new InvalidOperationException($"device.remove: {reply.RootElement}");
                Host.WaitForOutput(p, $"pci: slot {slot} ejected", sw, Timeout);
                double r = sw.Elapsed.TotalMilliseconds;
                if (i == 0) continue;
                diskAdd.Add(a);
                diskRemove.Add(r);
            }
        }
        finally { Host.Kill(p); File.Delete(sock); }
        yield return new("9a", "vCPU hot-add: vcpu.set → the guest reports the CPU online", "ms", Stats.Of(add), "no peer", null, "reported");
        yield return new("9b", "vCPU removal: vcpu.set → the guest has parked and ejected the CPU", "ms", Stats.Of(remove), "no peer", null, "reported");
        yield return new("9c", "disk hot-add: device.add → the guest's virtio-blk driver is up on it", "ms", Stats.Of(diskAdd), "no peer", null, "reported");
        yield return new("9d", "disk removal: device.remove → the guest has released and ejected it", "ms", Stats.Of(diskRemove), "no peer", null, "reported");
    }

    private static double Change(Process p, LineClient control, int count, string guestLine)
    {
        var sw = Stopwatch.StartNew();
        using (var reply = control.Request($"{{\"request\":\"vcpu.set\",\"count\":{count}}}"))
            if (!reply.RootElement.GetProperty("ok").GetBoolean()) throw new InvalidOperationException($"vcpu.set {count}: {reply.RootElement}");
        Host.WaitForOutput(p, guestLine, sw, Timeout);
        return sw.Elapsed.TotalMilliseconds;
    }
}
