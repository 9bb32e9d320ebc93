using System.Diagnostics;
using KvmPS.Engine.Tests.Linux;
using KvmPS.Engine.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace KvmPS.Engine.Tests.State;

/// <summary>
/// Debian's kernel snapshotted part-way through its early boot, the VMM killed, and restored in a new process: it
/// still reaches the serial console. Slow (minutes on nested KVM): in the LinuxBoot category, run alone like
/// <see cref="LinuxEarlyBootTests"/>, with the published kvmps-vmm.
/// </summary>
[Trait("Category", "LinuxBoot")]
[Collection("vmm-process")]
public class LinuxSnapshotTests(ITestOutputHelper log)
{
    private const string ConsoleEnabled = "printk: console [ttyS0] enabled";
    private const string Cmdline = "console=ttyS0 earlyprintk=serial,ttyS0,115200 clearcpuid=cx16 noxsave panic=-1";
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(6);

    private static string Read(string path) => File.Exists(path) ? File.ReadAllText(path) : "";

    [LinuxKernelFact]
    public void EarlyBootKernelRestoredInANewProcessReachesTheConsole()
    {
        string vmlinux = VmlinuxExtractor.ExtractCached(LinuxKernelFactAttribute.FindKernel()!);
        using var dir = new TempDir();
        string serial = dir.File("before.log"), sock = dir.File("a.sock"), snapshot = dir.File("snap");
        var clock = Stopwatch.StartNew();
        using (var vmm = new VmmProcess("--kernel", vmlinux, "--cmdline", Cmdline, "--memory", "512M", "--serial", "file:" + serial, "--control-socket", sock, "--on-crash", "exit"))
        {
            // Part-way: the kernel has started (early printk) but not yet switched its console.
            var deadline = DateTime.UtcNow + Timeout;
            while (!Read(serial).Contains("Linux version") && DateTime.UtcNow < deadline && !vmm.HasExited) Thread.Sleep(20);
            Assert.True(Read(serial).Contains("Linux version"), Read(serial) + vmm.Stderr);
            using var client = new ControlClient(sock);
            var reply = client.Ok("snapshot.create", $"\"path\": \"{snapshot}\", \"resume\": false");
            log.WriteLine($"snapshot after {clock.Elapsed.TotalSeconds:F1} s: {reply}");
            Assert.DoesNotContain(ConsoleEnabled, Read(serial));
            vmm.Signal(9);
            vmm.WaitForExit(Timeout);
        }
        string after = dir.File("after.log");
        using var restored = new VmmProcess("--restore", snapshot, "--serial", "file:" + after, "--on-crash", "exit");
        var until = DateTime.UtcNow + Timeout;
        while (!Read(after).Contains(ConsoleEnabled) && DateTime.UtcNow < until && !restored.HasExited) Thread.Sleep(50);
        string text = Read(after);
        log.WriteLine($"restored after {clock.Elapsed.TotalSeconds:F1} s in all; {restored.Stderr}\n--- serial after restore (tail) ---\n{string.Join('\n', text.Split('\n').TakeLast(15))}");
        Assert.Contains(ConsoleEnabled, text);
        Assert.DoesNotContain("Linux version", text); // continued, not booted again
    }
}
