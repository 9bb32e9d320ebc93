using System.Diagnostics;
using System.Text;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Store;
using KvmPS.Management.Vmm;

namespace KvmPS.Management.Tests.TestSupport;

/// <summary>
/// A temporary store (short /tmp/kvt-XXXXXXXX root: socket paths are limited to 107 bytes) with a VmManager
/// on the real kvmps-vmm. Dispose kills every kvmps-vmm whose command line points into the root, even after
/// a failed test.
/// </summary>
public sealed class LifecycleSandbox : IDisposable
{
    public LifecycleSandbox(VmmFixture fixture, IDiskImageCreator? diskImageCreator = null)
    {
        Fixture = fixture;
        Root = Path.Combine("/tmp", "kvt-" + Guid.NewGuid().ToString("N")[..8]);
        Store = VmStore.Open(Root);
        Manager = new VmManager(Store, new VmmProcessLauncher(fixture.VmmPath), diskImageCreator, new VmManagerOptions
        {
            StartTimeout = TimeSpan.FromSeconds(20),
            GracefulStopTimeout = TimeSpan.FromSeconds(2),
            ExitTimeout = TimeSpan.FromSeconds(5),
        });
    }

    public VmmFixture Fixture { get; }
    public string Root { get; }
    public VmStore Store { get; }
    public VmManager Manager { get; }

    /// <summary>The built-in guest with a command line (e.g. <c>kvmps.run=poweroff</c>).</summary>
    public VmDefinition GuestWithCmdline(string name, string cmdline) =>
        TestDefinitions.Minimal(name) with { Boot = new DefaultGuestBoot(cmdline) };

    public static VmInfo WaitFor(Func<VmInfo> get, Func<VmInfo, bool> condition, string what, double seconds = 10)
    {
        var clock = Stopwatch.StartNew();
        VmInfo last;
        while (!condition(last = get()))
        {
            if (clock.Elapsed.TotalSeconds > seconds)
                throw new TimeoutException($"waited {seconds} s for {what}; last: {last.State} ({last.StateReason}) pid {last.Pid}");
            Thread.Sleep(20);
        }
        return last;
    }

    public static string WaitForSerial(string path, string text, double seconds = 10)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var content = File.Exists(path) ? File.ReadAllText(path) : "";
            if (content.Contains(text, StringComparison.Ordinal))
                return content;
            if (clock.Elapsed.TotalSeconds > seconds)
                throw new TimeoutException($"'{text}' did not appear in {path}; content: {content}");
            Thread.Sleep(20);
        }
    }

    /// <summary>Pids of live (non-zombie) kvmps-vmm processes whose command line mentions this sandbox's root.</summary>
    public IReadOnlyList<int> VmmProcesses()
    {
        var pids = new List<int>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid))
                continue;
            try
            {
                var cmdline = Encoding.UTF8.GetString(File.ReadAllBytes(Path.Combine(dir, "cmdline")));
                if (cmdline.Contains("kvmps-vmm", StringComparison.Ordinal) && cmdline.Contains(Root + "/", StringComparison.Ordinal))
                    pids.Add(pid);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
            }
        }
        return pids;
    }

    public void Dispose()
    {
        foreach (var pid in VmmProcesses())
        {
            try
            {
                Process.GetProcessById(pid).Kill();
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException or System.ComponentModel.Win32Exception)
            {
            }
        }
        var clock = Stopwatch.StartNew();
        while (VmmProcesses().Count > 0 && clock.Elapsed.TotalSeconds < 5)
            Thread.Sleep(20);
        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
