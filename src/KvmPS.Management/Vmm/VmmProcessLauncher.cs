using System.Collections;
using System.Collections.Concurrent;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using KvmPS.Management.Definitions;
using KvmPS.Interop;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Store;

namespace KvmPS.Management.Vmm;

/// <summary>How a process ended: <see cref="ExitCode"/> if it exited, <see cref="Signal"/> if a signal killed it; neither if unknown.</summary>
public readonly record struct ProcessExit(int? ExitCode, int? Signal)
{
    public override string ToString() =>
        ExitCode is { } code ? $"exit status {code}" : Signal is { } signal ? $"signal {signal}" : "unknown status";
}

/// <summary>A kvmps-vmm process this process started. Its exit is observed (and the zombie reaped) by a background thread.</summary>
public sealed class VmmProcess
{
    internal VmmProcess(int pid, string socketPath, string logPath, long logOffset, Task<ProcessExit> exited)
    {
        Pid = pid;
        SocketPath = socketPath;
        LogPath = logPath;
        LogOffset = logOffset;
        Exited = exited;
    }

    public int Pid { get; }
    public string SocketPath { get; }

    /// <summary>vmm.log; output of this run starts at <see cref="LogOffset"/>.</summary>
    public string LogPath { get; }

    public long LogOffset { get; }

    /// <summary>Completes when the process has exited.</summary>
    public Task<ProcessExit> Exited { get; }

    /// <summary>The last lines this run wrote to vmm.log (stdout and stderr), at most <paramref name="maxChars"/> characters.</summary>
    public string ReadLogTail(int maxChars = 2000)
    {
        try
        {
            using var stream = new FileStream(LogPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            var start = Math.Max(LogOffset, stream.Length - maxChars * 4L);
            stream.Seek(start, SeekOrigin.Begin);
            using var reader = new StreamReader(stream, Encoding.UTF8);
            var text = reader.ReadToEnd().Trim();
            return text.Length <= maxChars ? text : "…" + text[^maxChars..];
        }
        catch (IOException)
        {
            return "";
        }
        catch (UnauthorizedAccessException)
        {
            return "";
        }
    }
}

/// <summary>
/// Finds the kvmps-vmm executable and starts it for a VM, detached from the caller: new session, stdin from
/// /dev/null, stdout/stderr appended to <c>vmm.log</c> in the VM folder, serial console to <c>serial.log</c>,
/// control socket at <see cref="VmStore.SocketPath"/>, configuration in <c>vmm.json</c>, pid in <c>vmm.pid</c>.
/// The VMM keeps running when the caller (pwsh, the CLI) exits.
/// </summary>
public sealed class VmmProcessLauncher
{
    public const string BinaryVariable = "KVMPS_VMM";
    public const string BinaryName = "kvmps-vmm";

    private readonly Lazy<string> _binaryPath;

    /// <param name="binaryPath">The kvmps-vmm executable; null = <see cref="LocateBinary"/> on first use.</param>
    public VmmProcessLauncher(string? binaryPath = null)
    {
        _binaryPath = binaryPath is null ? new Lazy<string>(LocateBinary) : new Lazy<string>(Path.GetFullPath(binaryPath));
    }

    /// <summary>The executable used; throws <see cref="VmmBinaryNotFoundException"/> if there is none.</summary>
    public string BinaryPath => _binaryPath.Value;

    /// <summary>
    /// <c>$KVMPS_VMM</c>; else <c>kvmps-vmm</c> beside the program that holds this code: in this assembly's folder,
    /// its <c>bin/</c> (the installed module package carries it so) or <c>../bin/</c> (the published layout,
    /// <c>out/KvmPS</c> beside <c>out/bin</c>); else <c>PATH</c>. Never a binary of some other tree: pwsh's own
    /// folder and the folders above are not searched.
    /// </summary>
    public static string LocateBinary()
    {
        var searched = new List<string>();
        var fromEnvironment = Environment.GetEnvironmentVariable(BinaryVariable);
        if (!string.IsNullOrEmpty(fromEnvironment))
        {
            if (IsExecutableFile(fromEnvironment))
                return Path.GetFullPath(fromEnvironment);
            // An explicit setting that is wrong must not silently fall back to some other binary.
            throw new VmmBinaryNotFoundException(new[] { $"${BinaryVariable}={fromEnvironment} (not an executable file)" });
        }
        searched.Add($"${BinaryVariable} (not set)");

        // pwsh loads the module from its folder, where Location is meaningful; under NativeAOT or single-file it
        // is empty and AppContext.BaseDirectory is the application's folder (out/bin for kvmps).
#pragma warning disable IL3000
        var assemblyLocation = typeof(VmmProcessLauncher).Assembly.Location;
#pragma warning restore IL3000
        var directory = string.IsNullOrEmpty(assemblyLocation) ? AppContext.BaseDirectory : Path.GetDirectoryName(assemblyLocation)!;
        foreach (var candidate in new[] { Path.Combine(directory, BinaryName), Path.Combine(directory, "bin", BinaryName),
                                          Path.Combine(directory, "..", "bin", BinaryName) })
        {
            var full = Path.GetFullPath(candidate);
            searched.Add(full);
            // A module installed from its .nupkg has lost the execute bit (zip entries carry none): restore it.
            if (IsExecutableFile(full) || (File.Exists(full) && ExecutableFile.TryMakeExecutable(full)))
                return full;
        }

        foreach (var pathDirectory in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            var candidate = Path.Combine(pathDirectory, BinaryName);
            if (IsExecutableFile(candidate))
                return Path.GetFullPath(candidate);
        }
        searched.Add("PATH");
        throw new VmmBinaryNotFoundException(searched);
    }

    /// <summary>
    /// Checks the definition is supported (<see cref="VmmFeatureSupport"/>), writes vmm.json, starts kvmps-vmm
    /// and writes vmm.pid. Returns as soon as the process exists; it has not necessarily booted yet. The
    /// caller is expected to hold the store lock (so two starts cannot race) and to wait for the VM outside it.
    /// </summary>
    public VmmProcess Launch(VmStore store, VmDefinition definition)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(definition);
        VmmFeatureSupport.EnsureSupported(definition);
        // A definition stored before the admin narrowed the allowed folders (or edited by hand) is checked again here.
        store.CheckPaths(definition);
        var name = definition.Name;
        var configPath = store.VmmConfigPath(name);
        // An adapter on a KvmPS network needs the network up (its bridge exists): refuse here, naming the network.
        var networks = new Networks.NetworkManager(store);
        foreach (var network in definition.NetworkAdapters.Select(a => a.NetworkName).OfType<string>().Distinct())
            networks.EnsureUsable(name, network);
        foreach (var socket in definition.VfioUserDevices)
            EnsureVfioUserServer(name, socket);
        DurableFile.WriteAtomically(configPath, VmmConfigBuilder.Build(definition, store.SocketPath(name), store.SerialLogPath(name), p => store.ResolveDiskPath(definition.Name, p),
            n => Networks.NetworkRegistry.BridgeFor(store.Root, n)));
        return Spawn(store, name, BootArguments(BinaryPath, configPath, store.SocketPath(name), store.SerialLogPath(name)), "starting", definition);
    }

    /// <summary>A vfio-user server must be listening before the VMM starts: refuse here, naming the socket, when it cannot be.</summary>
    private static void EnsureVfioUserServer(string vmName, string socketPath)
    {
        // lstat: the VMM connects to this very path; a link would be followed there too, but says nothing of its target here.
        uint type = KvmPS.Interop.Libc.FileTypeOf(socketPath);
        if (type == 0)
            throw new VfioUserServerNotFoundException(vmName, socketPath, "no such socket");
        if (type != KvmPS.Interop.Libc.S_IFSOCK && type != KvmPS.Interop.Libc.S_IFLNK)
            throw new VfioUserServerNotFoundException(vmName, socketPath, "it is not a Unix socket");
    }

    /// <summary>
    /// Starts kvmps-vmm from a snapshot directory (<c>--restore</c>: the machine comes from its config.json and
    /// state, not from the definition) and writes vmm.pid; with <paramref name="paused"/> the VM stays Paused.
    /// As <see cref="Launch"/>, returns once the process exists; the caller holds the store lock.
    /// </summary>
    public VmmProcess LaunchRestore(VmStore store, string vmName, string snapshotDirectory, bool paused)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentException.ThrowIfNullOrEmpty(snapshotDirectory);
        var definition = store.Get(vmName);
        var argv = RestoreArguments(BinaryPath, snapshotDirectory, paused, store.SocketPath(vmName), store.SerialLogPath(vmName), definition);
        return Spawn(store, vmName, argv, $"restoring from '{snapshotDirectory}'", definition);
    }

    /// <summary>
    /// Starts a second kvmps-vmm for a running VM that waits on <paramref name="incomingSocketPath"/> for the running
    /// VMM's migration stream (local live upgrade, docs/migration.md): <paramref name="configPath"/> is the configuration
    /// the running VMM was started with, the control socket and console are the VM's own (the new VMM takes the control
    /// socket over once the old one let go), and guest RAM is memfd-backed so the next upgrade need not copy it either.
    /// vmm.pid is NOT written: it names the running VMM until the migration completed (the caller writes it then).
    /// </summary>
    public VmmProcess LaunchIncoming(VmStore store, string vmName, string configPath, string incomingSocketPath, bool memfd)
    {
        ArgumentNullException.ThrowIfNull(store);
        var argv = new List<string>(BootArguments(BinaryPath, configPath, store.SocketPath(vmName), store.SerialLogPath(vmName)))
        {
            "--incoming", "unix:" + incomingSocketPath,
        };
        if (memfd)
            argv.AddRange(["--memfd", "on"]);
        return Spawn(store, vmName, argv.ToArray(), $"starting (to receive the running VM over '{incomingSocketPath}')", store.Get(vmName), writePidFile: false);
    }

    /// <summary>
    /// A VM moving in from another host: a VMM waiting on <paramref name="incomingUri"/> (<c>tcp:ADDR:PORT</c> or
    /// <c>unix:PATH</c>) for a stream that presents the token in <paramref name="tokenFile"/> (0600; the VMM deletes it).
    /// </summary>
    public VmmProcess LaunchIncoming(VmStore store, string vmName, string configPath, string incomingUri, string? tokenFile, bool memfd)
    {
        ArgumentNullException.ThrowIfNull(store);
        var argv = new List<string>(BootArguments(BinaryPath, configPath, store.SocketPath(vmName), store.SerialLogPath(vmName)))
        {
            "--incoming", incomingUri,
        };
        if (tokenFile is not null)
            argv.AddRange(["--incoming-token-file", tokenFile]);
        if (memfd)
            argv.AddRange(["--memfd", "on"]);
        return Spawn(store, vmName, argv.ToArray(), $"starting (to receive the running VM over '{incomingUri}')", store.Get(vmName), writePidFile: false);
    }

    /// <summary>The command line of a normal start.</summary>
    internal static string[] BootArguments(string binary, string configPath, string socketPath, string serialPath) =>
    [
        binary,
        "--config", configPath,
        // Repeated on the command line (flags override the file): liveness checks match the process by it.
        "--control-socket", socketPath,
        "--serial", "file:" + serialPath,
        "--on-crash", VmmConfigBuilder.OnCrash == KvmPS.Contract.GuestCrashAction.Stay ? "stay" : "exit",
    ];

    /// <summary>The command line of a restore (docs/vmm.md): the snapshot brings its own configuration.</summary>
    internal static string[] RestoreArguments(string binary, string snapshotDirectory, bool paused, string socketPath, string serialPath, VmDefinition? definition = null)
    {
        var argv = new List<string> { binary, "--restore", Path.GetFullPath(snapshotDirectory) };
        if (paused)
            argv.Add("--paused");
        // The control socket and console of this store, not the ones recorded in the snapshot (it may come from an export).
        argv.AddRange(["--control-socket", socketPath, "--serial", "file:" + serialPath]);
        // The console log's bound is this VM's setting now, not the one the snapshot was taken with.
        if (definition is not null)
            argv.AddRange(["--serial-log-max", definition.LogMaxBytes.ToString(CultureInfo.InvariantCulture),
                           "--serial-log-files", definition.LogFileCount.ToString(CultureInfo.InvariantCulture)]);
        return argv.ToArray();
    }

    private VmmProcess Spawn(VmStore store, string name, string[] argv, string what, VmDefinition definition, bool writePidFile = true)
    {
        var binary = argv[0];
        // As root with the kvmps user present: jailed by default (VmmJailOptions), with a minimal environment.
        string[] jail;
        try { jail = VmmJailOptions.Arguments(store, name); }
        catch (JailSettingException e) { throw new VmmLaunchException(name, $"VM '{name}': cannot start kvmps-vmm: {e.Message}", inner: e); }
        // CPU and memory limits on the VMM's cgroup, jailed or not (VmmCgroupOptions).
        argv = [.. argv, .. jail, .. VmmCgroupOptions.Arguments(definition, jail)];
        var socketPath = store.SocketPath(name);
        var logPath = store.VmmLogPath(name);
        var pidPath = store.PidPath(name);

        long logOffset;
        int pid;
        // Opened here without following links (a vmm.log link planted in the VM folder is refused, not written through),
        // 0600, and handed to the VMM as its stdout and stderr.
        // vmm.log is bounded like serial.log: rotated at the VM's LogMaxBytes before each VMM start (the running VMM
        // holds it as its stdout, so it is not cut under it).
        VmmLogRotation.RotateIfFull(logPath, definition.LogMaxBytes, definition.LogFileCount);
        using (var log = OpenVmmLog(name, logPath))
        {
            log.Write(Encoding.UTF8.GetBytes(
                $"---- {DateTimeOffset.Now.ToString("yyyy-MM-dd HH:mm:ss.fff zzz", CultureInfo.InvariantCulture)} kvmps: {what} {binary} for VM '{name}'\n" +
                (jail.Length == 0 && VmmJailOptions.UnjailedNote() is { } note ? $"kvmps: {note}\n" : "")));
            log.Flush();
            logOffset = log.Position;
            try
            {
                pid = ProcessInterop.SpawnDetached(binary, argv, jail.Length > 0 ? VmmJailOptions.MinimalEnvironment(Environment.GetEnvironmentVariables()) : CurrentEnvironment(), log.SafeFileHandle);
            }
            catch (IOException e)
            {
                throw new VmmLaunchException(name, $"VM '{name}': cannot start kvmps-vmm: {e.Message}", inner: e);
            }
        }
        var exited = ChildReaper.Watch(pid);
        if (!writePidFile)
            return new VmmProcess(pid, socketPath, logPath, logOffset, exited);
        try
        {
            DurableFile.WriteAtomically(pidPath, Encoding.ASCII.GetBytes(pid.ToString(CultureInfo.InvariantCulture) + "\n"));
        }
        catch
        {
            ProcessInterop.Kill(pid, ProcessInterop.SIGKILL);
            exited.Wait(TimeSpan.FromSeconds(5));
            throw;
        }
        return new VmmProcess(pid, socketPath, logPath, logOffset, exited);
    }

    private static FileStream OpenVmmLog(string vmName, string logPath)
    {
        try
        {
            return NoFollowFile.AppendStream(logPath, StoreConfinement.FileMode);
        }
        catch (SymlinkRefusedException e)
        {
            throw new VmmLaunchException(vmName, $"VM '{vmName}': {e.Message}", inner: e);
        }
    }

    private static List<string> CurrentEnvironment()
    {
        var list = new List<string>();
        foreach (DictionaryEntry entry in Environment.GetEnvironmentVariables())
            list.Add($"{entry.Key}={entry.Value}");
        return list;
    }

    private static bool IsExecutableFile(string path) => ExecutableFile.IsExecutable(path);
}

/// <summary>
/// Reaps the VMM processes this process spawned (they are our children until we exit), so they do not stay
/// zombies in a long-lived pwsh session, and captures their exit status for start errors. One blocking
/// <c>waitpid</c> per child on a background thread; .NET's own SIGCHLD handling only reaps the children
/// <see cref="System.Diagnostics.Process"/> started, so it does not race with this.
/// </summary>
internal static class ChildReaper
{
    private static readonly ConcurrentDictionary<int, Task<ProcessExit>> s_children = new();

    public static Task<ProcessExit> Watch(int pid)
    {
        var completion = new TaskCompletionSource<ProcessExit>(TaskCreationOptions.RunContinuationsAsynchronously);
        s_children[pid] = completion.Task;
        var thread = new Thread(() =>
        {
            var exit = new ProcessExit(null, null);
            while (true)
            {
                var result = ProcessInterop.WaitPid(pid, out var status, 0);
                if (result == pid)
                {
                    var signal = status & 0x7f;
                    exit = signal == 0 ? new ProcessExit((status >> 8) & 0xff, null) : new ProcessExit(null, signal);
                    break;
                }
                if (result < 0 && Marshal.GetLastPInvokeError() == Libc.EINTR)
                    continue;
                break; // ECHILD: somebody else reaped it; the status is unknown
            }
            s_children.TryRemove(pid, out _);
            completion.TrySetResult(exit);
        })
        {
            IsBackground = true,
            Name = $"kvmps-reap-{pid}",
        };
        thread.Start();
        return completion.Task;
    }

    /// <summary>The exit task of a child this process started and has not seen exit yet; null otherwise.</summary>
    public static Task<ProcessExit>? TryGet(int pid) => s_children.TryGetValue(pid, out var task) ? task : null;
}
