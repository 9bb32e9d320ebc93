using System.Diagnostics;

namespace KvmPS.Bench;

/// <summary>
/// Figures 9: ACPI CPU hot-plug on a running VM, kvmps-vmm alone (no peer: QEMU's CPU hot-plug interface is its own
/// register block, which the built-in guest does not drive). The built-in guest idle at its prompt, 1 of at most 2
/// vCPUs present. 9a: control <c>vcpu.set {"count": 2}</c> sent → the guest's <c>acpi: cpu 1 online</c> line (the
/// SCI, its scan of the hot-plug controller, INIT/SIPI, the new CPU running). 9b: <c>vcpu.set {"count": 1}</c> → the
/// guest's <c>acpi: cpu 1 ejected</c> (the CPU parked, then the eject written). Both in the same VM, alternately.
/// </summary>
public static class Hotplug
{
    public const string Method = "9. the built-in guest idle at its prompt, 256 MiB, `--vcpus 1 --max-vcpus 2`; kvmps-vmm only (QEMU's CPU hot-plug is a register block of its own that the built-in guest does not drive, so there is no peer). 9a: control `vcpu.set {\"count\": 2}` sent → the guest's `acpi: cpu 1 online` on the console: the GPE's SCI, the guest's scan of the hot-plug controller, INIT/SIPI and the new CPU reporting in. 9b: `vcpu.set {\"count\": 1}` sent → `acpi: cpu 1 ejected`: the guest parks the CPU and writes the eject. One VM, add and remove alternately, the first pair not counted.";

    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    public static IEnumerable<FigureResult> Measure(string vmm, string work, int runs)
    {
        Console.Error.WriteLine("figure 9: vCPU hot-add and removal");
        string sock = Path.Combine(work, "hp.sock");
        File.Delete(sock);
        var clock = Stopwatch.StartNew();
        var p = Host.Start(vmm, ["--vcpus", "1", "--max-vcpus", "2", "--memory", "256M", "--control-socket", sock]);
        var add = new List<double>();
        var remove = new List<double>();
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
        }
        finally { Host.Kill(p); File.Delete(sock); }
        yield return new("9a", "vCPU hot-add: vcpu.set → the guest reports the CPU online", "ms", Stats.Of(add), "no peer", null, "reported");
        yield return new("9b", "vCPU removal: vcpu.set → the guest has parked and ejected the CPU", "ms", Stats.Of(remove), "no peer", null, "reported");
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
