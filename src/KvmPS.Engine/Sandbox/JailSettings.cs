using System.Globalization;
using KvmPS.Interop;
using KvmPS.Vmm;

namespace KvmPS.Sandbox;

/// <summary>
/// The jail's switches on kvmps-vmm's command line (docs/confinement.md, "The jail"): <c>--jail on|off</c>,
/// <c>--user NAME|UID:GID</c>, <c>--cgroup PATH</c>. Without <c>--jail</c> the VMM is jailed exactly when a user is
/// given, so a VMM started as before runs as before.
/// </summary>
public sealed record JailSettings(bool Enabled, string? User, string? Cgroup)
{
    /// <summary>The user <c>--jail on</c> drops to when no <c>--user</c> is given (made by <c>./build.sh setup</c>).</summary>
    public const string DefaultUser = "kvmps";

    public static readonly JailSettings Off = new(false, null, null);

    /// <summary>
    /// <c>--cpu-weight N</c>, <c>--cpu-max-percent N</c> (of one host CPU), <c>--memory-max-bytes N</c>: written into
    /// the <c>--cgroup</c> folder before the VMM joins it, jail or not (docs/confinement.md, "cgroup limits").
    /// </summary>
    public CgroupLimits Limits { get; init; } = CgroupLimits.None;

    /// <summary>Takes the jail's options out of <paramref name="args"/>.</summary>
    public static JailSettings FromArgs(string[] args, out string[] rest)
    {
        bool? jail = null;
        string? user = null, cgroup = null;
        int? weight = null, cap = null;
        long? memory = null;
        var kept = new List<string>(args.Length);
        for (int i = 0; i < args.Length; i++)
        {
            string arg = args[i];
            string? Value(string name)
            {
                if (arg == name) return i + 1 < args.Length ? args[++i] : throw new VmmConfigException($"{name} needs a value.");
                return arg.StartsWith(name + "=", StringComparison.Ordinal) ? arg[(name.Length + 1)..] : null;
            }
            if (Value("--jail") is { } j)
                jail = j switch { "on" => true, "off" => false, _ => throw new VmmConfigException($"--jail: '{j}' is not on or off.") };
            else if (Value("--user") is { } u)
                user = u.Length > 0 ? u : throw new VmmConfigException("--user: empty (give a user name or UID:GID).");
            else if (Value("--cgroup") is { } c)
                cgroup = CheckCgroup(c);
            else if (Value("--cpu-weight") is { } w)
                weight = (int)Whole("--cpu-weight", w, CgroupLimits.MaximumCpuWeight);
            else if (Value("--cpu-max-percent") is { } p)
                cap = (int)Whole("--cpu-max-percent", p, CgroupLimits.MaximumCpuMaxPercent);
            else if (Value("--memory-max-bytes") is { } m)
                memory = Whole("--memory-max-bytes", m, long.MaxValue);
            else
                kept.Add(arg);
        }
        rest = [.. kept];
        bool enabled = jail ?? user is not null;
        if (!enabled && user is not null) throw new VmmConfigException("--user needs the jail: it cannot be given with --jail off.");
        var limits = new CgroupLimits(weight, cap, memory);
        if (limits.Problem() is { } problem) throw new VmmConfigException(problem + ".");
        if (!limits.IsNone && cgroup is null)
            throw new VmmConfigException("--cpu-weight, --cpu-max-percent and --memory-max-bytes limit the VMM's cgroup: give --cgroup PATH too.");
        return new JailSettings(enabled, enabled ? user ?? DefaultUser : null, cgroup) { Limits = limits };
    }

    /// <summary>A whole decimal number up to <paramref name="maximum"/>; anything else is a usage error naming the flag and the text.</summary>
    private static long Whole(string flag, string text, long maximum) =>
        long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out long n) && n <= maximum
            ? n : throw new VmmConfigException($"{flag}: '{text}' is not a whole number from 1 to {maximum}.");

    /// <summary>A cgroup below the VMM's own: relative, no '..', no empty parts (<c>kvmps/web</c>).</summary>
    private static string CheckCgroup(string path)
    {
        var parts = path.Split('/');
        if (path.Length == 0 || path.StartsWith('/') || parts.Any(p => p is "" or "." or ".."))
            throw new VmmConfigException($"--cgroup: '{path}' is not a relative cgroup path such as kvmps/web (no leading '/', no '.' or '..').");
        return path;
    }
}

/// <summary>The user the jailed VMM runs as: its uid, gid and supplementary groups.</summary>
public sealed record JailUser(string Name, uint Uid, uint Gid, uint[] Groups)
{
    /// <summary>
    /// <c>NAME</c> (from /etc/passwd, its groups from /etc/group) or <c>UID:GID</c>. Read directly, not through NSS:
    /// the VMM loads no NSS modules. The group of <paramref name="kvmDevice"/> is added when it is not root's, so a
    /// guest reboot (which makes a new KVM VM) can open it again.
    /// </summary>
    public static JailUser Resolve(string spec, string kvmDevice = "/dev/kvm", string passwd = "/etc/passwd", string group = "/etc/group")
    {
        JailUser user;
        var colon = spec.Split(':');
        if (colon.Length == 2 && uint.TryParse(colon[0], NumberStyles.None, CultureInfo.InvariantCulture, out uint uid)
            && uint.TryParse(colon[1], NumberStyles.None, CultureInfo.InvariantCulture, out uint gid))
            user = new JailUser(spec, uid, gid, []);
        else
        {
            string? line = File.Exists(passwd) ? File.ReadLines(passwd).FirstOrDefault(l => l.Split(':') is { Length: >= 4 } f && f[0] == spec) : null;
            if (line is null) throw new VmmConfigException($"--user: no user '{spec}' in {passwd} (create it with ./build.sh setup, or give UID:GID).");
            var f = line.Split(':');
            if (!uint.TryParse(f[2], NumberStyles.None, CultureInfo.InvariantCulture, out uid) || !uint.TryParse(f[3], NumberStyles.None, CultureInfo.InvariantCulture, out gid))
                throw new VmmConfigException($"--user: the entry of '{spec}' in {passwd} has no numeric uid and gid.");
            var groups = File.Exists(group)
                ? File.ReadLines(group).Select(l => l.Split(':')).Where(g => g.Length >= 4 && g[3].Split(',').Contains(spec))
                    .Select(g => uint.TryParse(g[2], NumberStyles.None, CultureInfo.InvariantCulture, out uint n) ? n : uint.MaxValue).Where(n => n != uint.MaxValue)
                : [];
            user = new JailUser(spec, uid, gid, [.. groups]);
        }
        if (user.Uid == 0 || user.Gid == 0) throw new VmmConfigException($"--user: '{spec}' is root (uid or gid 0); the jail is for dropping root.");
        if (Interop.Libc.FstatAt(Interop.Libc.AT_FDCWD, kvmDevice, out var kvm, 0) == 0 && kvm.st_gid != 0 && !user.Groups.Contains(kvm.st_gid) && kvm.st_gid != user.Gid)
            user = user with { Groups = [.. user.Groups, kvm.st_gid] };
        return user;
    }
}
