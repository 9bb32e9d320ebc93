using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Text;
using KvmPS.Engine.Tests.Support;
using KvmPS.Vm;
using Xunit.Abstractions;

namespace KvmPS.Engine.Tests.Linux;

/// <summary>
/// A real Linux kernel (the distribution's, from /boot) booted on our engine as an ELF vmlinux: it exercises the boot
/// protocol (boot_params, command line), e820, the ACPI and MP tables and the 16550 UART, up to the point where the
/// kernel switches its console to ttyS0.
/// </summary>
/// <remarks>
/// Run it alone (it takes a minute or more on nested KVM):
/// <code>
/// dotnet publish src/kvmps-vmm -c Release -o out/bin   # the test boots the real host process when it is there
/// dotnet test tests/KvmPS.Engine.Tests --filter "Category=LinuxBoot" --logger "console;verbosity=detailed"
/// </code>
/// Skipped when no kernel is installed (<c>apt-get install -y linux-image-amd64 xz-utils</c>). The VMM binary is
/// <c>$KVMPS_VMM</c>, else the repository's <c>out/bin/kvmps-vmm</c>; without either, the engine runs in-process.
/// The command line masks what nested KVM through PVM cannot emulate at CPL0 (<c>cmpxchg16b</c>, <c>xrstor</c>); the
/// kernel later stops at its int3 self-test there, which is after the line this test waits for.
/// </remarks>
[Trait("Category", "LinuxBoot")]
public class LinuxEarlyBootTests(ITestOutputHelper log)
{
    private const string ConsoleEnabled = "printk: console [ttyS0] enabled";
    private const string Cmdline = "console=ttyS0 earlyprintk=serial,ttyS0,115200 clearcpuid=cx16 noxsave panic=-1";
    private const ulong MemoryBytes = 512UL << 20;
    private static readonly TimeSpan BootTimeout = TimeSpan.FromMinutes(6);

    [LinuxKernelFact]
    public void KernelReachesTheSerialConsole()
    {
        string bzImage = LinuxKernelFactAttribute.FindKernel()!;
        var sw = Stopwatch.StartNew();
        string vmlinux = VmlinuxExtractor.ExtractCached(bzImage);
        log.WriteLine($"kernel {bzImage} -> {vmlinux} ({new FileInfo(vmlinux).Length} bytes, {sw.Elapsed.TotalSeconds:F1} s)");

        string? vmm = VmmBinary.TryFind();
        sw.Restart();
        var (serial, reached, diagnostics) = vmm is null ? BootInProcess(vmlinux) : BootWithVmm(vmm, vmlinux);
        log.WriteLine($"{(reached ? "reached" : "did not reach")} '{ConsoleEnabled}' after {sw.Elapsed.TotalSeconds:F1} s via {vmm ?? "the in-process engine"}");

        if (!reached)
            Assert.Fail($"the kernel did not print '{ConsoleEnabled}'.\n{diagnostics}\n--- serial (tail) ---\n{Tail(serial, 60)}");
        log.WriteLine(Tail(serial, 15));

        // What the kernel read from our boot_params: the command line and the e820 map (docs/guest-layout.md).
        Assert.Contains($"Command line: {Cmdline}", serial);
        Assert.Contains("BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable", serial);
        Assert.Contains("BIOS-e820: [mem 0x000000000009fc00-0x00000000000fffff] reserved", serial);
        Assert.Contains($"BIOS-e820: [mem 0x0000000000100000-0x{MemoryBytes - 1:x16}] usable", serial);
        Assert.Contains("ACPI: RSDP 0x00000000000E0000", serial);
    }

    private (string Serial, bool Reached, string Diagnostics) BootWithVmm(string vmm, string vmlinux)
    {
        string dir = Path.Combine(Path.GetTempPath(), $"kvmps-linuxboot-{Environment.ProcessId}-{Guid.NewGuid():N}"[..40]);
        Directory.CreateDirectory(dir);
        TestJail.GiveToJailUser(dir);
        string serialPath = Path.Combine(dir, "serial.log"), socket = Path.Combine(dir, "control.sock");
        var psi = new ProcessStartInfo(vmm)
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        foreach (string a in (string[])["--kernel", vmlinux, "--cmdline", Cmdline, "--memory", $"{MemoryBytes >> 20}M",
                     "--serial", $"file:{serialPath}", "--control-socket", socket, "--on-crash", "exit", .. TestJail.Options([])])
            psi.ArgumentList.Add(a);

        var stderr = new StringBuilder();
        using var process = new Process { StartInfo = psi };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (stderr) stderr.AppendLine(e.Data); };
        process.OutputDataReceived += (_, _) => { };
        process.Start();
        process.BeginErrorReadLine();
        process.BeginOutputReadLine();
        try
        {
            string serial = "";
            bool reached = false;
            var deadline = DateTime.UtcNow + BootTimeout;
            while (DateTime.UtcNow < deadline)
            {
                serial = ReadShared(serialPath);
                if (serial.Contains(ConsoleEnabled)) { reached = true; break; }
                if (process.HasExited) break;
                Thread.Sleep(250);
            }
            string state = "";
            if (!reached && !process.HasExited)
                state = $"timed out after {BootTimeout}; control socket:\n{Control(socket, "status")}\n{Control(socket, "metrics")}\n";
            else if (process.HasExited)
            {
                process.WaitForExit(); // drains the redirected streams
                state = $"kvmps-vmm exited with status {process.ExitCode}\n";
                serial = ReadShared(serialPath);
            }
            lock (stderr) return (serial, reached, $"{state}--- kvmps-vmm stderr ---\n{stderr}");
        }
        finally
        {
            if (!process.HasExited)
            {
                try { process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
                process.WaitForExit(10_000);
            }
            try { Directory.Delete(dir, recursive: true); } catch (IOException) { }
        }
    }

    private static (string Serial, bool Reached, string Diagnostics) BootInProcess(string vmlinux)
    {
        using var run = new GuestRun(new MachineConfig { KernelPath = vmlinux, Cmdline = Cmdline, MemoryBytes = MemoryBytes });
        run.Machine.Start();
        bool reached = run.WaitForOutput(ConsoleEnabled, BootTimeout);
        string diagnostics = run.Machine.Exited.IsCompleted
            ? $"the VM ended: {run.Machine.Exited.Result}"
            : $"timed out after {BootTimeout}; VM state {run.Machine.State}";
        run.Machine.Stop("test finished");
        return (run.Output, reached, diagnostics);
    }

    private static string ReadShared(string path)
    {
        if (!File.Exists(path)) return "";
        using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        using var reader = new StreamReader(f, Encoding.Latin1);
        return reader.ReadToEnd();
    }

    /// <summary>One request on the VMM's control socket (docs/vmm.md), for the failure report.</summary>
    private static string Control(string socketPath, string request)
    {
        try
        {
            using var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            s.ReceiveTimeout = 5000;
            s.Connect(new UnixDomainSocketEndPoint(socketPath));
            using var stream = new NetworkStream(s);
            stream.Write(Encoding.UTF8.GetBytes($"{{\"request\": \"{request}\"}}\n"));
            using var reader = new StreamReader(stream);
            return $"{request}: {reader.ReadLine()}";
        }
        catch (Exception e) when (e is SocketException or IOException)
        {
            return $"{request}: (no answer: {e.Message})";
        }
    }

    private static string Tail(string text, int lines)
    {
        var all = text.Replace("\r", "").Split('\n');
        return string.Join('\n', all[Math.Max(0, all.Length - lines)..]);
    }
}
