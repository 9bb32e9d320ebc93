using System.Globalization;

namespace KvmPS.Interop;

/// <summary>A cgroup limit could not be written (the file and value named) or a cgroup could not be found.</summary>
public sealed class CgroupLimitException(string message) : IOException(message);

/// <summary>
/// The CPU and memory limits of a VMM's cgroup (docs/confinement.md, "cgroup limits"), in the VMM's own terms; the VM
/// settings (Hyper-V's RelativeWeight and Maximum percent of the VM's processors, the VMM's memory overhead) are turned
/// into these by management. Written by kvmps-vmm when it joins its cgroup, and by management (root) into a running
/// VMM's cgroup for a live change. Null: the cgroup's default (weight 100, no CPU cap, no memory limit), written too,
/// so a cgroup folder left from an earlier run with limits does not keep them.
/// </summary>
/// <param name="CpuWeight">Relative CPU weight 1-10000 (cgroup v2 <c>cpu.weight</c>; default 100). v1: <c>cpu.shares</c> = weight × 1024 / 100.</param>
/// <param name="CpuMaxPercent">CPU time cap in percent of ONE host CPU (150: one and a half CPUs); <c>cpu.max</c> "quota period" with a 100 ms period, v1 <c>cpu.cfs_quota_us</c>.</param>
/// <param name="MemoryMaxBytes">The whole cgroup's memory limit: guest RAM charged to it plus the VMM's own (<c>memory.max</c>, v1 <c>memory.limit_in_bytes</c>).</param>
public sealed record CgroupLimits(int? CpuWeight, int? CpuMaxPercent, long? MemoryMaxBytes)
{
    public const int MinimumCpuWeight = 1;
    public const int MaximumCpuWeight = 10000;
    public const int DefaultCpuWeight = 100;

    /// <summary>A cap of up to 1024 host CPUs, in percent of one.</summary>
    public const int MaximumCpuMaxPercent = 1024 * 100;

    /// <summary>The CFS period the cap is given in, 100 ms (the kernel's default period).</summary>
    public const long CpuPeriodMicroseconds = 100_000;

    /// <summary>Below this a VMM cannot even start its runtime; a smaller limit is a mistake, not a limit.</summary>
    public const long MinimumMemoryMaxBytes = 16L << 20;

    public static readonly CgroupLimits None = new(null, null, null);

    public bool IsNone => CpuWeight is null && CpuMaxPercent is null && MemoryMaxBytes is null;

    /// <summary>The first value out of range, named as <paramref name="names"/> calls it (flags or settings); null when valid.</summary>
    public string? Problem(string weightName = "--cpu-weight", string capName = "--cpu-max-percent", string memoryName = "--memory-max-bytes")
    {
        if (CpuWeight is { } w && w is < MinimumCpuWeight or > MaximumCpuWeight)
            return $"{weightName}: {w} is not a CPU weight from {MinimumCpuWeight} to {MaximumCpuWeight}";
        if (CpuMaxPercent is { } p && p is < 1 or > MaximumCpuMaxPercent)
            return $"{capName}: {p} is not a percent of one host CPU from 1 to {MaximumCpuMaxPercent}";
        if (MemoryMaxBytes is { } m && (m < MinimumMemoryMaxBytes || m % 4096 != 0))
            return $"{memoryName}: {m} is not a memory limit of at least {MinimumMemoryMaxBytes} bytes (16 MiB) in whole 4096-byte pages";
        return null;
    }

    /// <summary>cgroup v1 <c>cpu.shares</c> for a v2 weight: the default weight 100 is the default 1024 shares; at least 2 (the kernel's floor).</summary>
    public static long SharesFor(int weight) => Math.Max(2, weight * 1024L / DefaultCpuWeight);

    /// <summary>The CFS quota in microseconds per <see cref="CpuPeriodMicroseconds"/> for a cap in percent of one CPU.</summary>
    public static long QuotaMicrosecondsFor(int percent) => percent * CpuPeriodMicroseconds / 100;

    /// <summary>The files of a cgroup v2 folder and what goes in them, in the order they are written.</summary>
    public IReadOnlyList<(string File, string Value)> V2Files() =>
    [
        ("cpu.weight", Number(CpuWeight ?? DefaultCpuWeight)),
        ("cpu.max", CpuMaxPercent is { } p ? $"{Number(QuotaMicrosecondsFor(p))} {Number(CpuPeriodMicroseconds)}" : $"max {Number(CpuPeriodMicroseconds)}"),
        ("memory.max", MemoryMaxBytes is { } m ? Number(m) : "max"),
    ];

    /// <summary>The files of the v1 <paramref name="controller"/> hierarchy's folder (<c>cpu</c> or <c>memory</c>) and what goes in them.</summary>
    public IReadOnlyList<(string File, string Value)> V1Files(string controller) => controller switch
    {
        "cpu" =>
        [
            ("cpu.shares", Number(SharesFor(CpuWeight ?? DefaultCpuWeight))),
            // The period first: a quota is checked against the period in force.
            ("cpu.cfs_period_us", Number(CpuPeriodMicroseconds)),
            ("cpu.cfs_quota_us", CpuMaxPercent is { } p ? Number(QuotaMicrosecondsFor(p)) : "-1"),
        ],
        "memory" => [("memory.limit_in_bytes", MemoryMaxBytes is { } m ? Number(m) : "-1")],
        _ => [],
    };

    /// <summary>
    /// Writes the limits into the cgroup folders <paramref name="folders"/> (one v2 folder, or the v1 <c>cpu</c> and
    /// <c>memory</c> folders, told apart by their files). A default whose file is missing is skipped (a v2 folder
    /// whose parent could not give it the controller still counts); a limit whose file is missing or refuses the
    /// value throws, naming both.
    /// </summary>
    public void WriteTo(IEnumerable<string> folders)
    {
        foreach (string folder in folders)
        {
            // v2 folders have cgroup.controllers; a v1 folder is told by the files its controller puts in every folder.
            var files = File.Exists(Path.Join(folder, "cgroup.controllers")) ? V2Files()
                : File.Exists(Path.Join(folder, "cpu.shares")) ? V1Files("cpu")
                : File.Exists(Path.Join(folder, "memory.limit_in_bytes")) ? V1Files("memory")
                : throw new CgroupLimitException($"{folder} is neither a cgroup v2 folder nor a v1 cpu or memory one");
            foreach (var (file, value) in files)
            {
                string path = Path.Join(folder, file);
                bool isLimit = !IsDefault(file);
                if (!File.Exists(path))
                {
                    if (isLimit) throw new CgroupLimitException($"cgroup {folder} has no {file} (its controller is not enabled there), so '{value}' cannot be set");
                    continue;
                }
                try { File.WriteAllText(path, value); }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    throw new CgroupLimitException($"cgroup: writing '{value}' to {path} failed: {e.Message}");
                }
            }
        }
    }

    private bool IsDefault(string file) => file switch
    {
        "cpu.weight" or "cpu.shares" => CpuWeight is null,
        "cpu.max" or "cpu.cfs_period_us" or "cpu.cfs_quota_us" => CpuMaxPercent is null,
        _ => MemoryMaxBytes is null,
    };

    /// <summary>
    /// The cgroup folders process <paramref name="pid"/> is in for its CPU and memory limits, from
    /// <c>/proc/PID/cgroup</c>: the v2 folder when the unified hierarchy has the controllers, else the v1 <c>cpu</c>
    /// and <c>memory</c> folders. Only folders whose path ends in <paramref name="expectedSuffix"/> (<c>/kvmps/web</c>)
    /// are returned, so a VMM started without its own cgroup never has its parent's limits changed; empty: none.
    /// </summary>
    public static IReadOnlyList<string> FoldersOf(int pid, string expectedSuffix, string procRoot = "/proc", string mount = "/sys/fs/cgroup")
    {
        string[] lines;
        try { lines = File.ReadAllLines(Path.Join(procRoot, pid.ToString(CultureInfo.InvariantCulture), "cgroup")); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return []; }
        var found = new List<string>();
        bool Ours(string path) => path.EndsWith(expectedSuffix, StringComparison.Ordinal);
        foreach (string line in lines)
        {
            var f = line.Split(':', 3);
            if (f.Length != 3 || !Ours(f[2])) continue;
            if (f[0] == "0" && f[1].Length == 0)
            {
                // v2: at the mount on a v2-only host, at unified/ on a hybrid one; used when it has the folder with limits.
                foreach (string root in new[] { mount, Path.Join(mount, "unified") })
                {
                    string dir = Path.Join(root, f[2]);
                    if (File.Exists(Path.Join(dir, "cpu.weight")) || File.Exists(Path.Join(dir, "memory.max"))) return [dir];
                }
                continue;
            }
            foreach (string controller in f[1].Split(','))
                if (controller is "cpu" or "memory")
                {
                    // A co-mounted hierarchy (cpu,cpuacct) is mounted under its joined name, often with a link per controller.
                    string dir = Path.Join(mount, Directory.Exists(Path.Join(mount, controller)) ? controller : f[1], f[2]);
                    if (Directory.Exists(dir) && !found.Contains(dir)) found.Add(dir);
                }
        }
        return found;
    }

    /// <summary>
    /// The folders <paramref name="relative"/> (<c>kvmps/web</c>) would be below the cgroups of the process
    /// <paramref name="pid"/> (<c>self</c>: this one), in every hierarchy it is in (v2, and v1 <c>cpu</c> and
    /// <c>memory</c>), that exist: where kvmps-vmm made its cgroup when this process started it (docs/confinement.md).
    /// </summary>
    public static IReadOnlyList<string> FoldersBelowOwn(string relative, string pid = "self", string procRoot = "/proc", string mount = "/sys/fs/cgroup")
    {
        string[] lines;
        try { lines = File.ReadAllLines(Path.Join(procRoot, pid, "cgroup")); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return []; }
        var found = new List<string>();
        void Add(string dir) { if (Directory.Exists(dir) && !found.Contains(dir)) found.Add(dir); }
        foreach (string line in lines)
        {
            var f = line.Split(':', 3);
            if (f.Length != 3) continue;
            if (f[0] == "0" && f[1].Length == 0)
            {
                Add(Path.Join(mount, f[2], relative));
                Add(Path.Join(mount, "unified", f[2], relative));
                continue;
            }
            foreach (string controller in f[1].Split(','))
                if (controller is "cpu" or "memory")
                    Add(Path.Join(mount, Directory.Exists(Path.Join(mount, controller)) ? controller : f[1], f[2], relative));
        }
        return found;
    }

    /// <summary>
    /// Removes each of <paramref name="folders"/> that is empty (rmdir: a cgroup with a process or a child folder stays,
    /// as does any folder the kernel refuses to remove); returns those removed.
    /// </summary>
    public static IReadOnlyList<string> RemoveEmpty(IEnumerable<string> folders)
    {
        var removed = new List<string>();
        foreach (string dir in folders)
        {
            try
            {
                Directory.Delete(dir, recursive: false); // rmdir(2); a cgroup's files are the kernel's and do not count
                removed.Add(dir);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        }
        return removed;
    }

    private static string Number(long value) => value.ToString(CultureInfo.InvariantCulture);
}
