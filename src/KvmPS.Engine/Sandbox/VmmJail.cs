using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using KvmPS.Interop;

namespace KvmPS.Sandbox;

/// <summary>A host file or folder the jailed VMM still needs, seen inside its root at the same path.</summary>
/// <param name="Writable">False binds it read-only (a kernel, an initrd).</param>
public sealed record JailPath(string HostPath, bool Writable = true);

/// <summary>
/// The VMM's jail, in the manner of Firecracker's jailer but inside kvmps-vmm (docs/confinement.md, "The jail"): first
/// thing, the process takes a mount namespace of its own (<see cref="EnterMountNamespace"/>); once the machine is built
/// (images, taps, sockets open), the main thread pivots it into a private root (a small read-only tmpfs holding only
/// the VM's own files, <c>/dev/kvm</c>, <c>/dev/urandom</c>, …), which moves every thread's root, then the whole process
/// becomes an unprivileged user with no capabilities. Runs before any vCPU thread starts; credentials change on every
/// thread.
/// </summary>
public static unsafe class VmmJail
{
    /// <summary>Device nodes every jailed VMM keeps: KVM (a guest reboot makes a new VM), entropy, and /dev/null.</summary>
    public static readonly string[] Devices = ["/dev/kvm", "/dev/urandom", "/dev/null"];

    /// <summary>Builds the private root, pivots into it and drops to <paramref name="user"/>. Returns what it did, for vmm.log.</summary>
    /// <exception cref="SandboxException">A step the kernel refused (named, with errno).</exception>
    public static string Enter(JailUser user, IEnumerable<JailPath> paths)
    {
        // Taken at start (EnterMountNamespace), before the seccomp filters, which no longer allow unshare.
        if (!s_namespaceTaken) throw new SandboxException("the jail's mount namespace was not taken when the VMM started");
        AwaitFinalizerThread();
        // Opened in the new namespace (a bind mount's source must be a mount of the caller's namespace), before the
        // tmpfs goes over the mount point.
        var sources = OpenSources(paths);
        try
        {
            // Any folder does as the mount point: it is only seen in this namespace, and the sources are held by fds.
            string root = Directory.Exists("/mnt") ? "/mnt" : "/tmp";
            Check(Libc.Mount("kvmps-jail", root, "tmpfs", Libc.MS_NOSUID | Libc.MS_NODEV | Libc.MS_NOEXEC, "mode=0755,size=256k"), $"mount(tmpfs, {root})");
            foreach (var (path, fd, directory) in sources)
            {
                string target = root + path.HostPath;
                MakeParents(root, path.HostPath);
                if (directory) { if (Libc.Mkdir(target, 0x1ED) != 0 && Marshal.GetLastPInvokeError() != 17) Check(-1, $"mkdir({target})"); }
                else
                {
                    int created = Libc.Open(target, Libc.O_CREAT | Libc.O_WRONLY | Libc.O_CLOEXEC, 0x180);
                    Check(created, $"creating the mount point {target}");
                    Libc.Close(created);
                }
                Check(Libc.Mount($"/proc/self/fd/{fd}", target, null, Libc.MS_BIND | Libc.MS_REC, null), $"bind-mounting {path.HostPath}");
                if (!path.Writable)
                    Check(Libc.Mount(null, target, null, Libc.MS_REMOUNT | Libc.MS_BIND | Libc.MS_RDONLY, null), $"making {path.HostPath} read-only");
            }
            Check(Libc.Chdir(root), $"chdir({root})");
            // The old root is stacked beneath the new one and detached: nothing outside the jail stays reachable.
            Check(Libc.PivotRoot(".", "."), "pivot_root");
            Check(Libc.Umount2(".", Libc.MNT_DETACH), "detaching the old root");
            Check(Libc.Chdir("/"), "chdir(/)");
            Check(Libc.Mount(null, "/", null, Libc.MS_REMOUNT | Libc.MS_RDONLY | Libc.MS_NOSUID | Libc.MS_NODEV | Libc.MS_NOEXEC, null), "making the jail's root read-only");
        }
        finally
        {
            foreach (var source in sources) Libc.Close(source.Fd);
        }
        LimitResources();
        DropTo(user);
        return $"jailed: user {user.Name} (uid {user.Uid}, gid {user.Gid}{(user.Groups.Length > 0 ? ", groups " + string.Join(',', user.Groups) : "")}), " +
            $"no capabilities, a private root holding {sources.Count} host paths, at most {MaxOpenFiles} open files, no core dumps";
    }

    /// <summary>
    /// The jailed VMM's open-file limit, soft and hard (Firecracker's jailer sets 2048): far above what a VM with every
    /// device and the control socket's clients holds, and a bound on what a guest can make it open (vsock connections
    /// each take a host socket).
    /// </summary>
    public const int MaxOpenFiles = 4096;

    /// <summary>
    /// Resource limits, soft and hard, set as root before the drop so that the jail's user cannot raise them: open files
    /// (<see cref="MaxOpenFiles"/>), and no core dumps (a core holds guest RAM; leaving root also makes the process
    /// non-dumpable). A thread count limit is left to the cgroup: RLIMIT_NPROC counts every process of the jail's user,
    /// which all VMMs share.
    /// </summary>
    private static void LimitResources()
    {
        var files = new Libc.RLimit { rlim_cur = MaxOpenFiles, rlim_max = MaxOpenFiles };
        Check(Libc.SetRlimit(Libc.RLIMIT_NOFILE, &files), $"setrlimit(RLIMIT_NOFILE, {MaxOpenFiles})");
        var core = new Libc.RLimit();
        Check(Libc.SetRlimit(Libc.RLIMIT_CORE, &core), "setrlimit(RLIMIT_CORE, 0)");
    }

    private static bool s_namespaceTaken;
    private static int s_namespaceFd = -1;
    private static readonly ManualResetEventSlim s_finalizerJoined = new();
    private static int s_finalizerError;

    /// <summary>
    /// The jail's mount namespace, taken by the main thread before it writes to the console or starts a thread (but
    /// the one making the KVM VM, which has ended by the pivot): a
    /// thread shares the namespace and root of the thread that started it, and pivot_root moves the root of every
    /// thread of the namespace, so every thread started from here on ends in the private root. Taken only at the
    /// pivot, the runtime's signal-handling and socket-event threads, started earlier, stayed in the host's namespace
    /// with the host's root. The finalizer thread, which the runtime starts before Main, is moved into it with setns
    /// (<see cref="AwaitFinalizerThread"/>). Idempotent; needs root.
    /// </summary>
    /// <exception cref="SandboxException">Not root, or the kernel refused (named, with errno).</exception>
    public static void EnterMountNamespace()
    {
        if (s_namespaceTaken) return;
        if (Libc.GetEuid() != 0)
            throw new SandboxException("the jail is set up as root and drops root, but kvmps-vmm does not run as root (--jail off runs without it)");
        Check(Libc.Unshare(Libc.CLONE_NEWNS), "unshare(CLONE_NEWNS)");
        // Nothing mounted here propagates back to the host, and the host's later mounts do not reach in.
        Check(Libc.Mount(null, "/", null, Libc.MS_REC | Libc.MS_PRIVATE, null), "mount(/, MS_REC|MS_PRIVATE)");
        int fd = Libc.Open("/proc/thread-self/ns/mnt", Libc.O_RDONLY | Libc.O_CLOEXEC, 0);
        Check(fd, "opening /proc/thread-self/ns/mnt");
        s_namespaceFd = fd;
        s_namespaceTaken = true;
        LeaveForTheFinalizer();
        GC.Collect(0, GCCollectionMode.Forced, blocking: true); // queues it; the finalizer thread runs it meanwhile
    }

    [MethodImpl(MethodImplOptions.NoInlining)] // unreachable once this returns
    private static void LeaveForTheFinalizer() => _ = new FinalizerThreadMover();

    /// <summary>Its finalizer runs on the runtime's finalizer thread: the one way to run code there.</summary>
    private sealed class FinalizerThreadMover
    {
        ~FinalizerThreadMover()
        {
            // setns into a mount namespace needs a thread that shares its root and cwd with no other (CLONE_FS).
            int error = 0;
            if (Libc.Unshare(Libc.CLONE_FS) != 0 || Libc.Setns(s_namespaceFd, Libc.CLONE_NEWNS) != 0) error = Marshal.GetLastPInvokeError();
            s_finalizerError = error;
            s_finalizerJoined.Set();
        }
    }

    /// <summary>
    /// Waits until the finalizer thread is in the jail's namespace: before the sandbox's filters (which lack setns),
    /// and before the pivot (which then moves its root too).
    /// </summary>
    /// <exception cref="SandboxException">It did not get there.</exception>
    public static void AwaitFinalizerThread()
    {
        if (s_namespaceFd < 0) return;
        // One collection queues the mover; should it have survived that one, later ones do.
        for (int tries = 0; !s_finalizerJoined.Wait(TimeSpan.FromMilliseconds(100)); tries++)
        {
            if (tries == 50) throw new SandboxException("the runtime's finalizer thread did not join the jail's mount namespace within 5 s");
            GC.Collect();
        }
        if (s_finalizerError != 0)
            throw new SandboxException($"the runtime's finalizer thread could not join the jail's mount namespace: {Libc.Describe(s_finalizerError)}");
        Libc.Close(s_namespaceFd);
        s_namespaceFd = -1;
    }

    /// <summary>
    /// Groups, then gid, then uid (after the uid no change is allowed), through glibc, which applies each to every
    /// thread. Leaving uid 0 on all three ids clears the permitted and effective capabilities; capset clears the
    /// inheritable set too. Checked in /proc/self/status, not assumed.
    /// </summary>
    private static void DropTo(JailUser user)
    {
        fixed (uint* groups = user.Groups)
            Check(Libc.SetGroups((nuint)user.Groups.Length, groups), $"setgroups({string.Join(',', user.Groups)})");
        Check(Libc.SetResGid(user.Gid, user.Gid, user.Gid), $"setresgid({user.Gid})");
        Check(Libc.SetResUid(user.Uid, user.Uid, user.Uid), $"setresuid({user.Uid})");
        Check(Libc.ClearCapabilities(), "capset(0, 0, 0)");
        string? capEff = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("CapEff:", StringComparison.Ordinal));
        if (capEff is null || capEff[7..].Trim().Trim('0').Length != 0)
            throw new SandboxException($"capabilities remain after the drop to uid {user.Uid}: {capEff ?? "no CapEff line in /proc/self/status"}");
    }

    private static List<(JailPath Path, int Fd, bool Directory)> OpenSources(IEnumerable<JailPath> paths)
    {
        var opened = new List<(JailPath, int, bool)>();
        var bound = new List<string>();
        // Folders before what is inside them: a file inside a bound folder is reachable already.
        foreach (var path in paths.Where(p => p.HostPath.StartsWith('/')).DistinctBy(p => p.HostPath).OrderBy(p => p.HostPath.Length))
        {
            if (bound.Any(b => path.HostPath.StartsWith(b + "/", StringComparison.Ordinal))) continue;
            int fd = Libc.Open(path.HostPath, Libc.O_PATH | Libc.O_CLOEXEC, 0);
            if (fd < 0)
            {
                foreach (var (_, f, _) in opened) Libc.Close(f);
                throw new SandboxException($"{path.HostPath}: cannot be opened for the jail: {Libc.Describe(Marshal.GetLastPInvokeError())}");
            }
            bool directory = Libc.Fstat(fd, out var status) == 0 && (status.st_mode & 0xF000) == 0x4000;
            if (directory) bound.Add(path.HostPath.TrimEnd('/'));
            opened.Add((path, fd, directory));
        }
        return opened;
    }

    private static void MakeParents(string root, string hostPath)
    {
        string at = root;
        var parts = hostPath.Split('/', StringSplitOptions.RemoveEmptyEntries);
        for (int i = 0; i < parts.Length - 1; i++)
        {
            at += "/" + parts[i];
            if (Libc.Mkdir(at, 0x1ED) != 0 && Marshal.GetLastPInvokeError() != 17 /* EEXIST */) Check(-1, $"mkdir({at})");
        }
    }

    private static void Check(int result, string what)
    {
        if (result < 0) throw new SandboxException($"{what} failed: {Libc.Describe(Marshal.GetLastPInvokeError())}");
    }
}
