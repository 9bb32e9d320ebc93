using System.Globalization;
using KvmPS.Interop;

namespace KvmPS.Sandbox;

/// <summary>
/// Puts the VMM in a cgroup of its own, <c>--cgroup kvmps/web</c> below the cgroup it was started in (as systemd
/// delegates a subtree: a VMM started inside a service or container stays inside its limits). cgroup v2 where the
/// unified hierarchy has controllers (at /sys/fs/cgroup, or a hybrid host's /sys/fs/cgroup/unified with cpu or memory
/// enabled), else the v1 <c>cpu</c> and <c>memory</c> hierarchies. Done as root, before the VMM drops its privileges.
/// </summary>
public static class VmmCgroup
{
    public const string Mount = "/sys/fs/cgroup";
    private static readonly string[] V1Controllers = ["cpu", "memory"];

    /// <summary>
    /// Moves this process into <paramref name="relative"/> after writing <paramref name="limits"/> into it (so the VMM
    /// never runs there unlimited; defaults are written too, a folder left from an earlier run keeps nothing of it);
    /// returns the cgroup folders it joined.
    /// </summary>
    /// <exception cref="SandboxException">A folder could not be made or joined (named).</exception>
    /// <exception cref="CgroupLimitException">A limit could not be written (file and value named).</exception>
    public static IReadOnlyList<string> Join(string relative, Action<string> log, CgroupLimits? limits = null)
    {
        var join = Prepare(relative, log, limits);
        join.Start();
        join.Wait();
        return join.Folders;
    }

    /// <summary>
    /// <see cref="Join"/>'s folders and limits, made now, and their cgroup.procs files opened (as root); the move itself
    /// is <see cref="CgroupJoin.Start"/>'s, on a thread of its own: writing to cgroup.procs waits for an RCU grace
    /// period (cgroup v1's threadgroup lock), 10-20 ms on the test host, which the VMM's start then does not wait for.
    /// </summary>
    public static CgroupJoin Prepare(string relative, Action<string> log, CgroupLimits? limits = null)
    {
        limits ??= CgroupLimits.None;
        string[] own = File.ReadAllLines("/proc/self/cgroup");
        if (V2Root() is { } v2)
        {
            string ownPath = own.FirstOrDefault(l => l.StartsWith("0::", StringComparison.Ordinal))?[3..] ?? "/";
            string parent = Path.Join(v2, ownPath);
            string dir = Path.Join(parent, relative);
            MakeDirectory(dir);
            // Controllers for the new levels (cpu.weight, memory.max later). A parent that holds processes itself cannot
            // give its children controllers (cgroup v2's no-internal-process rule): then the VMM is still counted apart.
            string level = parent;
            foreach (string part in relative.Split('/'))
            {
                try { File.WriteAllText(Path.Join(level, "cgroup.subtree_control"), "+cpu +memory"); }
                catch (IOException e) { log($"kvmps-vmm: cgroup {level}: cpu and memory controllers not enabled for its children ({e.Message}); the VMM's cgroup counts but cannot limit"); break; }
                level = Path.Join(level, part);
            }
            limits.WriteTo([dir]);
            return Opened(new CgroupJoin([dir], movableAfterDrop: Environment.OSVersion.Version >= OpenerCredentialsV2));
        }
        var joined = new List<string>();
        foreach (string controller in V1Controllers)
        {
            // "4:memory:/some/path": the line whose controller list names this one.
            string? line = own.FirstOrDefault(l => l.Split(':', 3) is { Length: 3 } f && f[1].Split(',').Contains(controller));
            string hierarchy = Path.Join(Mount, controller);
            if (line is null || !Directory.Exists(hierarchy))
                throw new SandboxException($"cgroup: no cgroup v2 with controllers and no v1 '{controller}' hierarchy at {hierarchy} (run with --cgroup left out)");
            string dir = Path.Join(hierarchy, line.Split(':', 3)[2], relative);
            MakeDirectory(dir);
            limits.WriteTo([dir]);
            joined.Add(dir);
        }
        return Opened(new CgroupJoin(joined));
    }

    /// <summary>
    /// The first Linux whose cgroup v2 checks a <c>cgroup.procs</c> write against the credentials of the file's opener
    /// (the CVE-2021-4197 fix; stable kernels with the backport are taken for older, which only costs the deferral).
    /// v1 allows the write either way: the opener was root, and the task moved is the writer's own.
    /// </summary>
    private static readonly Version OpenerCredentialsV2 = new(5, 16);

    private static CgroupJoin Opened(CgroupJoin join)
    {
        join.Open();
        return join;
    }

    /// <summary>The unified hierarchy's mount if it has controllers to give, else null.</summary>
    private static string? V2Root()
    {
        foreach (string root in new[] { Mount, Path.Join(Mount, "unified") })
        {
            string controllers = Path.Join(root, "cgroup.controllers");
            if (!File.Exists(controllers)) continue;
            var names = File.ReadAllText(controllers).Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            // A v2-only host has its hierarchy at the root even with few controllers; a hybrid host's empty unified tree does not count.
            if (root == Mount || names.Contains("cpu") || names.Contains("memory")) return root;
        }
        return null;
    }

    private static void MakeDirectory(string dir)
    {
        try { Directory.CreateDirectory(dir); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new SandboxException($"cgroup {dir} cannot be made: {e.Message}"); }
    }
}
