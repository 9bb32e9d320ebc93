using KvmPS.Interop;
using Xunit;

namespace KvmPS.Engine.Tests.Sandbox;

/// <summary>How the VMM's limits become cgroup files, v2 and v1, and how a VMM's folders are found (docs/confinement.md, "cgroup limits").</summary>
public class CgroupLimitsTests
{
    [Fact]
    public void V2FilesCarryTheWeightTheCapPerPeriodAndTheMemoryLimit()
    {
        var files = new CgroupLimits(250, 150, 1L << 30).V2Files();
        Assert.Equal([("cpu.weight", "250"), ("cpu.max", "150000 100000"), ("memory.max", "1073741824")], files);
        Assert.Equal([("cpu.weight", "100"), ("cpu.max", "max 100000"), ("memory.max", "max")], CgroupLimits.None.V2Files());
    }

    [Theory]
    [InlineData(100, 1024)]
    [InlineData(1, 10)]
    [InlineData(10000, 102400)]
    [InlineData(50, 512)]
    public void V1SharesScaleTheWeightSoTheDefaultsMeet(int weight, long shares)
    {
        Assert.Equal(shares, CgroupLimits.SharesFor(weight));
        Assert.Contains(("cpu.shares", shares.ToString()), new CgroupLimits(weight, null, null).V1Files("cpu"));
    }

    [Fact]
    public void V1FilesSetThePeriodBeforeTheQuotaAndMinusOneForNone()
    {
        Assert.Equal([("cpu.shares", "1024"), ("cpu.cfs_period_us", "100000"), ("cpu.cfs_quota_us", "25000")], new CgroupLimits(null, 25, null).V1Files("cpu"));
        Assert.Equal([("memory.limit_in_bytes", "-1")], CgroupLimits.None.V1Files("memory"));
        Assert.Equal([("memory.limit_in_bytes", "33554432")], new CgroupLimits(null, null, 32L << 20).V1Files("memory"));
    }

    [Theory]
    [InlineData(0, null, null, "--cpu-weight: 0")]
    [InlineData(10001, null, null, "--cpu-weight: 10001")]
    [InlineData(null, 0, null, "--cpu-max-percent: 0")]
    [InlineData(null, 102401, null, "--cpu-max-percent: 102401")]
    [InlineData(null, null, 4096L, "--memory-max-bytes: 4096")]
    [InlineData(null, null, (16L << 20) + 1, "--memory-max-bytes: 16777217")]
    public void ValuesOutOfRangeAreNamed(int? weight, int? cap, long? memory, string message)
    {
        Assert.StartsWith(message, new CgroupLimits(weight, cap, memory).Problem());
        Assert.Null(new CgroupLimits(1, 1, 16L << 20).Problem());
    }

    [Fact]
    public void WriteToWritesDefaultsWhereFilesExistAndRefusesALimitWithoutItsFile()
    {
        string root = Path.Join(Path.GetTempPath(), $"cg-{Guid.NewGuid():N}");
        string v2 = Path.Join(root, "v2");
        Directory.CreateDirectory(v2);
        try
        {
            File.WriteAllText(Path.Join(v2, "cgroup.controllers"), "cpu memory");
            foreach (string f in new[] { "cpu.weight", "cpu.max", "memory.max" }) File.WriteAllText(Path.Join(v2, f), "old");
            new CgroupLimits(null, 40, null).WriteTo([v2]);
            Assert.Equal("100", File.ReadAllText(Path.Join(v2, "cpu.weight")));
            Assert.Equal("40000 100000", File.ReadAllText(Path.Join(v2, "cpu.max")));
            Assert.Equal("max", File.ReadAllText(Path.Join(v2, "memory.max")));
            // A folder whose parent could not give it the memory controller: the default is skipped, a limit is refused.
            File.Delete(Path.Join(v2, "memory.max"));
            CgroupLimits.None.WriteTo([v2]);
            var e = Assert.Throws<CgroupLimitException>(() => new CgroupLimits(null, null, 64L << 20).WriteTo([v2]));
            Assert.Contains("has no memory.max", e.Message);
            Assert.Contains("67108864", e.Message);
        }
        finally { Directory.Delete(root, true); }
    }

    [Fact]
    public void WriteToTellsV1FoldersByTheirFiles()
    {
        string root = Path.Join(Path.GetTempPath(), $"cg-{Guid.NewGuid():N}");
        string cpu = Path.Join(root, "cpu"), memory = Path.Join(root, "memory");
        Directory.CreateDirectory(cpu);
        Directory.CreateDirectory(memory);
        try
        {
            foreach (string f in new[] { "cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us" }) File.WriteAllText(Path.Join(cpu, f), "");
            File.WriteAllText(Path.Join(memory, "memory.limit_in_bytes"), "");
            new CgroupLimits(200, 300, 64L << 20).WriteTo([cpu, memory]);
            Assert.Equal("2048", File.ReadAllText(Path.Join(cpu, "cpu.shares")));
            Assert.Equal("300000", File.ReadAllText(Path.Join(cpu, "cpu.cfs_quota_us")));
            Assert.Equal("67108864", File.ReadAllText(Path.Join(memory, "memory.limit_in_bytes")));
            Assert.Throws<CgroupLimitException>(() => CgroupLimits.None.WriteTo([root]));
        }
        finally { Directory.Delete(root, true); }
    }

    [Fact]
    public void FoldersOfTakesOnlyTheVmsOwnCgroup()
    {
        string root = Path.Join(Path.GetTempPath(), $"cg-{Guid.NewGuid():N}");
        try
        {
            Directory.CreateDirectory(Path.Join(root, "proc", "42"));
            Directory.CreateDirectory(Path.Join(root, "mnt", "cpu", "svc", "kvmps", "web"));
            Directory.CreateDirectory(Path.Join(root, "mnt", "memory", "svc", "kvmps", "web"));
            File.WriteAllLines(Path.Join(root, "proc", "42", "cgroup"), ["5:memory:/svc/kvmps/web", "2:cpuacct:/", "1:cpu:/svc/kvmps/web", "0::/"]);
            var folders = CgroupLimits.FoldersOf(42, "/kvmps/web", Path.Join(root, "proc"), Path.Join(root, "mnt"));
            Assert.Equal([Path.Join(root, "mnt", "memory", "svc", "kvmps", "web"), Path.Join(root, "mnt", "cpu", "svc", "kvmps", "web")], folders);
            Assert.Empty(CgroupLimits.FoldersOf(42, "/kvmps/db", Path.Join(root, "proc"), Path.Join(root, "mnt")));
            Assert.Empty(CgroupLimits.FoldersOf(43, "/kvmps/web", Path.Join(root, "proc"), Path.Join(root, "mnt")));
        }
        finally { Directory.Delete(root, true); }
    }
}
