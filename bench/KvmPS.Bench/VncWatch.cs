using System.Diagnostics;
using System.Text;

namespace KvmPS.Bench;

/// <summary>
/// Figures 11: what a VNC viewer costs the VMM, against QEMU's VNC server, the same built-in guest on both drawing on
/// the same display device (QEMU's bochs-display; kvmps-vmm's <c>--device display</c> is the same device). One boot per
/// VMM; the guest's <c>fb fill</c> draws a fixed picture (the idle screen), its <c>fb anim 30</c> moves a 128x128 box
/// 30 times a second (the changing screen). For each screen and encoding a viewer (<see cref="RfbWatcher"/>) connects,
/// gets its full update, and after a settling second the VMM's CPU is taken over a fixed window while the viewer keeps
/// an incremental request pending.
/// </summary>
public static class VncWatch
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(120);
    private const int GuestMiB = 256, Fps = 30, WindowMs = 5000, SettleMs = 1000;

    public const string Method = "11. the built-in guest, 256 MiB, 1 vCPU, with the display device (kvmps-vmm `--device display --display vnc,unix=PATH`; QEMU 7.2 `-M pc -device bochs-display -vnc unix:PATH -name …,debug-threads=on`, both 16 MiB of VRAM) and a VNC viewer on the Unix socket: the bench's own RFB 3.8 client (`bench/KvmPS.Bench/RfbWatcher.cs`, the same for both), 32 bpp true colour, one encoding (ZRLE for 11a/11c, Raw for 11b/11d) plus DesktopSize; it sends the next incremental FramebufferUpdateRequest as soon as an update has been read, and counts updates and bytes without decoding them. The guest programs 1024x768x32 through the DISPI registers (`fb fill`: a fixed picture, the idle screen, 11a/11b; `fb anim 30`: a 128x128 box moved 8 pixels 30 times a second by the guest's timer, the changing screen, 11c/11d). One boot per VMM; per sample a viewer connects, gets its first full update, waits 1 s, then over a 5 s window the process's CPU time (`/proc/PID/task/*/schedstat`) is taken: of the threads other than the vCPUs (kvmps `vcpuN`, QEMU `CPU N/KVM`): the display and VNC work (the first row of each figure); and of the whole process (the second row; during `fb anim` it includes the vCPU busy-waiting for the next frame, the same guest code on both). Each as CPU ms per second of wall time. The note gives what the viewer received (updates/s, KiB/s) and the CPU with no viewer connected. The guest's drawing code is emulated CPL0 code on this nested host (≈ 1-2 M instructions/s): the frame rate is the guest's, the same on both. First sample per VMM and case not counted.";

    private readonly record struct Sample(double NonVcpuMsPerS, double AllMsPerS, double UpdatesPerS, double KiBPerS);

    private sealed record Case(string Id, bool Changing, int Encoding)
    {
        public string Screen => Changing ? $"changing screen (`fb anim {Fps}`)" : "idle screen (`fb fill`)";
        public string EncodingName => Encoding == RfbWatcher.EncodingZrle ? "ZRLE" : "Raw";
    }

    private static readonly Case[] Cases =
    [
        new("11a", false, RfbWatcher.EncodingZrle), new("11b", false, RfbWatcher.EncodingRaw),
        new("11c", true, RfbWatcher.EncodingZrle), new("11d", true, RfbWatcher.EncodingRaw),
    ];

    public static IEnumerable<FigureResult> Measure(string vmm, string qemu, string guest, string work, int runs, ISet<string> figures)
    {
        var cases = Cases.Where(c => figures.Contains("11") || figures.Contains(c.Id)).ToList();
        if (cases.Count == 0) return [];
        Console.Error.WriteLine($"figure 11: VNC viewer on an idle and a changing screen ({string.Join(", ", cases.Select(c => c.Id))})");
        var (k, kNone) = Run(true, vmm, qemu, guest, work, runs, cases);
        var (q, qNone) = Run(false, vmm, qemu, guest, work, runs, cases);
        var results = new List<FigureResult>();
        foreach (var c in cases)
        {
            var ks = k[c.Id]; var qs = q[c.Id];
            string Med(List<Sample> s, Func<Sample, double> f) => Stats.Of(s.Select(f).ToList()).Median.ToString(f(s[0]) >= 100 ? "F0" : "F1");
            string viewer = $"viewer got kvmps {Med(ks, s => s.UpdatesPerS)} updates/s, {Med(ks, s => s.KiBPerS)} KiB/s; QEMU {Med(qs, s => s.UpdatesPerS)} updates/s, {Med(qs, s => s.KiBPerS)} KiB/s";
            var kn = kNone[c.Changing]; var qn = qNone[c.Changing];
            results.Add(new(c.Id, $"VNC, one viewer, {c.EncodingName}, {c.Screen}: VMM CPU of non-vCPU threads (guest drawing code emulated CPL0 here)", "ms/s",
                Stats.Of(ks.Select(s => s.NonVcpuMsPerS).ToList()), "QEMU -vnc unix: (bochs-display, -M pc)", Stats.Of(qs.Select(s => s.NonVcpuMsPerS).ToList()), "≤ QEMU",
                $"{viewer}; no viewer: kvmps {kn.NonVcpuMsPerS:F2}, QEMU {qn.NonVcpuMsPerS:F2} ms/s"));
            results.Add(new(c.Id + " all", $"VNC, one viewer, {c.EncodingName}, {c.Screen}: whole-process CPU (vCPU included)", "ms/s",
                Stats.Of(ks.Select(s => s.AllMsPerS).ToList()), "QEMU -vnc unix: (bochs-display, -M pc)", Stats.Of(qs.Select(s => s.AllMsPerS).ToList()), "—",
                $"no viewer: kvmps {kn.AllMsPerS:F2}, QEMU {qn.AllMsPerS:F2} ms/s"));
        }
        return results;
    }

    private static (Dictionary<string, List<Sample>> Samples, Dictionary<bool, Sample> NoViewer) Run(bool kvmps, string vmm, string qemu, string guest, string work, int runs, List<Case> cases)
    {
        string sock = Path.Combine(work, $"vnc-{(kvmps ? "k" : "q")}-{Guid.NewGuid():N}.sock");
        var p = kvmps
            ? Host.Start(vmm, ["--vcpus", "1", "--memory", $"{GuestMiB}M", "--cmdline", "", "--device", "display", "--display", $"vnc,unix={sock}"])
            : Host.Start(qemu, ["-M", "pc", "-accel", "kvm", "-smp", "1", "-m", GuestMiB.ToString(), "-nodefaults", "-no-user-config",
                "-name", "kvmps-bench,debug-threads=on", "-display", "none", "-vnc", $"unix:{sock}", "-device", "bochs-display",
                "-serial", "stdio", "-no-reboot", "-kernel", guest, "-append", ""]);
        var samples = cases.ToDictionary(c => c.Id, _ => new List<Sample>());
        var none = new Dictionary<bool, Sample>();
        string who = kvmps ? "kvmps-vmm" : "QEMU";
        try
        {
            var clock = Stopwatch.StartNew();
            var seen = new StringBuilder();
            Host.WaitForOutput(p, "ready", clock, Timeout, seen);
            Thread.Sleep(300);
            foreach (bool changing in new[] { false, true })
            {
                var these = cases.Where(c => c.Changing == changing).ToList();
                if (these.Count == 0) continue;
                Type(p, changing ? $"fb anim {Fps}" : "fb fill");
                Host.WaitForOutput(p, changing ? $"fb: anim at {Fps} fps" : "fb: filled", clock, Timeout, seen);
                if (!seen.ToString().Contains("fb: 1024x768x32")) throw new InvalidOperationException($"{who}: the guest did not set 1024x768x32: {seen}");
                Thread.Sleep(SettleMs);
                none[changing] = Window(p.Id, null);
                foreach (var c in these)
                    for (int i = 0; i <= runs; i++)
                    {
                        using var viewer = RfbWatcher.Start(sock, c.Encoding, Timeout);
                        if (viewer.Width != 1024 || viewer.Height != 768) throw new InvalidOperationException($"{who}: the viewer sees {viewer.Width}x{viewer.Height}, not 1024x768");
                        Thread.Sleep(SettleMs);
                        var s = Window(p.Id, viewer);
                        if (viewer.Failure is { } e) throw new InvalidOperationException($"{who}: the VNC viewer failed: {e.Message}", e);
                        Console.Error.WriteLine($"  {who} {c.Id}: {s.NonVcpuMsPerS:F1} ms/s non-vCPU, {s.AllMsPerS:F1} ms/s all, {s.UpdatesPerS:F1} updates/s, {s.KiBPerS:F0} KiB/s");
                        if (i > 0) samples[c.Id].Add(s); // the first is a warm-up
                    }
                if (changing)
                {
                    p.StandardInput.Write("q");
                    p.StandardInput.Flush();
                    Host.WaitForOutput(p, "fb: stopped after", clock, Timeout, seen);
                }
            }
            return (samples, none);
        }
        finally
        {
            Host.Kill(p);
            try { File.Delete(sock); } catch (IOException) { }
        }
    }

    private static void Type(Process p, string command)
    {
        p.StandardInput.Write(command + "\r");
        p.StandardInput.Flush();
    }

    /// <summary>CPU of the process and what the viewer got over one window, per second of wall time.</summary>
    private static Sample Window(int pid, RfbWatcher? viewer)
    {
        var before = viewer?.Counters ?? default;
        double nonVcpu0 = Host.CpuMs(pid, excludeVcpus: true), all0 = Host.CpuMs(pid);
        var sw = Stopwatch.StartNew();
        Thread.Sleep(WindowMs);
        double nonVcpu1 = Host.CpuMs(pid, excludeVcpus: true), all1 = Host.CpuMs(pid);
        double seconds = sw.Elapsed.TotalSeconds;
        var after = viewer?.Counters ?? default;
        return new((nonVcpu1 - nonVcpu0) / seconds, (all1 - all0) / seconds, (after.Updates - before.Updates) / seconds, (after.Bytes - before.Bytes) / 1024.0 / seconds);
    }
}
