using KvmPS.Contract;
using KvmPS.Engine.Tests.Support;
using KvmPS.Interop;
using Xunit;

namespace KvmPS.Engine.Tests.Sandbox;

/// <summary>
/// kvmps-vmm's cgroup limits (docs/confinement.md, "cgroup limits"): <c>--cpu-weight</c>, <c>--cpu-max-percent</c> and
/// <c>--memory-max-bytes</c> are written into its <c>--cgroup</c> folder before it joins it, jailed or not, and read
/// back from the files the kernel keeps (v2 <c>cpu.weight</c>/<c>cpu.max</c>/<c>memory.max</c>, or v1's).
/// </summary>
[Collection("vmm-process")]
public class CgroupLimitsProcessTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private static string Read(string folder, string file) => File.ReadAllText(Path.Join(folder, file)).Trim();

    private static bool IsV2(string folder) => File.Exists(Path.Join(folder, "cgroup.controllers"));

    /// <summary>The folder holding <paramref name="file"/> among the VMM's cgroup folders (one v2 folder, or v1's cpu and memory ones).</summary>
    private static string With(IReadOnlyList<string> folders, string file) =>
        folders.FirstOrDefault(f => File.Exists(Path.Join(f, file))) ?? throw new Xunit.Sdk.XunitException($"no {file} in {string.Join(", ", folders)}");

    /// <summary>Checks what the kernel shows for the limits, in whichever cgroup version the host gave the VMM.</summary>
    private static void AssertLimits(IReadOnlyList<string> folders, int weight, int? capPercent, long? memoryBytes)
    {
        if (folders.Count == 1 && IsV2(folders[0]))
        {
            Assert.Equal(weight.ToString(), Read(folders[0], "cpu.weight"));
            Assert.Equal(capPercent is { } p ? $"{p * 1000} 100000" : "max 100000", Read(folders[0], "cpu.max"));
            Assert.Equal(memoryBytes?.ToString() ?? "max", Read(folders[0], "memory.max"));
            return;
        }
        Assert.Equal((weight * 1024L / 100).ToString(), Read(With(folders, "cpu.shares"), "cpu.shares"));
        Assert.Equal("100000", Read(With(folders, "cpu.cfs_period_us"), "cpu.cfs_period_us"));
        Assert.Equal(capPercent is { } q ? (q * 1000).ToString() : "-1", Read(With(folders, "cpu.cfs_quota_us"), "cpu.cfs_quota_us"));
        long limit = long.Parse(Read(With(folders, "memory.limit_in_bytes"), "memory.limit_in_bytes"));
        // v1 shows "no limit" as the largest page-aligned value.
        if (memoryBytes is { } m) Assert.Equal(m, limit);
        else Assert.True(limit > 1L << 50, $"memory.limit_in_bytes {limit} is still a limit");
    }

    [Fact]
    public void TheVmmWritesItsLimitsIntoItsCgroupAndALiveChangeReachesTheKernel()
    {
        string cgroup = $"kvmps/limits-{Guid.NewGuid():N}";
        using var dir = new TempDir();
        string sock = dir.File("c.sock");
        try
        {
            using (var vmm = new VmmProcess("--jail", "off", "--cgroup", cgroup, "--cpu-weight", "300", "--cpu-max-percent", "150",
                       "--memory-max-bytes", (1L << 30).ToString(), "--serial", "none", "--control-socket", sock))
            {
                using var client = new ControlClient(sock, Timeout);
                client.WaitForState("Running", Timeout);
                var folders = CgroupLimits.FoldersOf(vmm.Pid, "/" + cgroup);
                Assert.NotEmpty(folders);
                AssertLimits(folders, 300, 150, 1L << 30);

                // What management does for a live change: root writes the running VMM's cgroup files.
                new CgroupLimits(50, 25, 768L << 20).WriteTo(folders);
                AssertLimits(folders, 50, 25, 768L << 20);
                client.Ok("stop", "\"graceful\": false");
                Assert.Equal(VmmExitCode.Ok, vmm.WaitForExit(Timeout));
                Assert.Contains("cpu weight 300, cpu max 150% of one CPU, memory max 1073741824 bytes", vmm.Stderr);
            }
            // The folder stays after the VMM; a later start without limits must not inherit the old ones.
            using (var vmm = new VmmProcess("--jail", "off", "--cgroup", cgroup, "--serial", "none", "--control-socket", sock))
            {
                using var client = new ControlClient(sock, Timeout);
                client.WaitForState("Running", Timeout);
                AssertLimits(CgroupLimits.FoldersOf(vmm.Pid, "/" + cgroup), 100, null, null);
                client.Ok("stop", "\"graceful\": false");
                Assert.Equal(VmmExitCode.Ok, vmm.WaitForExit(Timeout));
            }
        }
        finally
        {
            RemoveCgroup(cgroup);
        }
    }

    [Fact]
    public void AJailedVmmGetsItsLimitsAndRootChangesThemAfterTheDrop()
    {
        string cgroup = $"kvmps/limits-jailed-{Guid.NewGuid():N}";
        using var dir = FolderOfNobody();
        string sock = dir.File("c.sock");
        try
        {
            using var vmm = new VmmProcess("--jail", "on", "--user", $"{Nobody}:{Nobody}", "--cgroup", cgroup, "--cpu-weight", "20", "--cpu-max-percent", "50",
                "--serial", "none", "--control-socket", sock);
            using var client = new ControlClient(sock, Timeout);
            client.WaitForState("Running", Timeout);
            Assert.StartsWith($"{Nobody}\t", File.ReadAllLines($"/proc/{vmm.Pid}/status").First(l => l.StartsWith("Uid:", StringComparison.Ordinal))[4..].Trim(), StringComparison.Ordinal);
            var folders = CgroupLimits.FoldersOf(vmm.Pid, "/" + cgroup);
            AssertLimits(folders, 20, 50, null);
            new CgroupLimits(30, null, 512L << 20).WriteTo(folders);
            AssertLimits(folders, 30, null, 512L << 20);
            client.Ok("stop", "\"graceful\": false");
            Assert.Equal(VmmExitCode.Ok, vmm.WaitForExit(Timeout));
        }
        finally
        {
            RemoveCgroup(cgroup);
        }
    }

    /// <summary>
    /// The move into the cgroup waits for an RCU grace period. A fresh jailed boot without a memory limit makes it after
    /// the jail's drop, through the cgroup.procs files it opened as root, while the guest starts, and answers its
    /// control socket only once it is in (so a live limit change finds the folders); with a memory limit the move
    /// comes before the guest RAM is touched. The order shows in the start-up trace.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AJailedBootMovesAfterTheDropUnlessItHasAMemoryLimitAndAnswersOnlyOnceMoved(bool memoryLimit)
    {
        string cgroup = $"kvmps/limits-move-{Guid.NewGuid():N}";
        using var dir = FolderOfNobody();
        string sock = dir.File("c.sock");
        string[] args = ["--jail", "on", "--user", $"{Nobody}:{Nobody}", "--cgroup", cgroup, "--serial", "none", "--control-socket", sock,
            .. memoryLimit ? ["--memory-max-bytes", (1L << 30).ToString()] : Array.Empty<string>()];
        try
        {
            using var vmm = new VmmProcess(args, redirectStdin: false, new Dictionary<string, string> { ["KVMPS_STARTUP_TRACE"] = "1" });
            using (var client = new ControlClient(sock, Timeout))
            {
                client.Ok("status");
                // The first reply: in every hierarchy's folder already.
                var folders = CgroupLimits.FoldersOf(vmm.Pid, "/" + cgroup);
                Assert.NotEmpty(folders);
                Assert.All(folders, f => Assert.Contains(vmm.Pid.ToString(), File.ReadAllLines(Path.Join(f, "cgroup.procs"))));
                client.Ok("stop", "\"graceful\": false");
            }
            Assert.Equal(VmmExitCode.Ok, vmm.WaitForExit(Timeout));
            string trace = vmm.Stderr.Split('\n').Single(l => l.StartsWith("kvmps-vmm: start-up ", StringComparison.Ordinal));
            var stages = trace.Split(' ').ToList();
            int started = stages.IndexOf("started"), moved = stages.IndexOf("cgroup");
            Assert.True(started > 0 && moved > 0, trace);
            Assert.True(memoryLimit ? moved < started : moved > started, trace);
        }
        finally
        {
            RemoveCgroup(cgroup);
        }
    }

    private const uint Nobody = 65534;

    /// <summary>A folder only the jail's user (nobody) may use, as management makes the VM folder for the kvmps user.</summary>
    private static TempDir FolderOfNobody()
    {
        var dir = new TempDir();
        File.SetUnixFileMode(dir.Path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        Assert.Equal(0, Chown(dir.Path, Nobody, Nobody));
        return dir;
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "chown", SetLastError = true)]
    private static extern int Chown(string path, uint uid, uint gid);

    [Fact]
    public void AVmmWithoutItsOwnCgroupHasNoFoldersForLimits()
    {
        using var dir = new TempDir();
        string sock = dir.File("c.sock");
        using var vmm = new VmmProcess("--jail", "off", "--serial", "none", "--control-socket", sock);
        using var client = new ControlClient(sock, Timeout);
        client.WaitForState("Running", Timeout);
        // Management must never write limits into the cgroup the VMM merely inherited (its own, or the host's root).
        Assert.Empty(CgroupLimits.FoldersOf(vmm.Pid, "/kvmps/no-such-vm"));
        client.Ok("stop", "\"graceful\": false");
        Assert.Equal(VmmExitCode.Ok, vmm.WaitForExit(Timeout));
    }

    [Theory]
    [InlineData(new[] { "--cpu-weight", "200" }, "give --cgroup PATH too")]
    [InlineData(new[] { "--cgroup", "kvmps/x", "--cpu-weight", "0" }, "--cpu-weight: 0 is not a CPU weight from 1 to 10000")]
    [InlineData(new[] { "--cgroup", "kvmps/x", "--cpu-weight", "10001" }, "--cpu-weight: '10001' is not a whole number from 1 to 10000")]
    [InlineData(new[] { "--cgroup", "kvmps/x", "--cpu-max-percent", "abc" }, "--cpu-max-percent: 'abc' is not a whole number")]
    [InlineData(new[] { "--cgroup", "kvmps/x", "--memory-max-bytes", "4096" }, "--memory-max-bytes: 4096 is not a memory limit of at least")]
    public void BadLimitsAreUsageErrors(string[] args, string message)
    {
        var (code, _, stderr) = VmmProcess.Run(Timeout, args);
        Assert.Equal(VmmExitCode.UsageError, code);
        Assert.Contains(message, stderr);
    }

    /// <summary>The cgroup folders the test made (empty once its VMMs exited), in every hierarchy this process is in.</summary>
    private static void RemoveCgroup(string cgroup)
    {
        foreach (string line in File.ReadAllLines("/proc/self/cgroup"))
        {
            var f = line.Split(':', 3);
            foreach (string controller in f[1].Length == 0 ? ["unified", ""] : f[1].Split(','))
            {
                string at = Path.Join("/sys/fs/cgroup", controller, f[2], cgroup);
                try { if (Directory.Exists(at)) Directory.Delete(at); } catch (IOException) { }
            }
        }
    }
}
