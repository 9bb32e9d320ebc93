using System.Runtime.InteropServices;

namespace KvmPS.Interop;

/// <summary>
/// Process control that <see cref="System.Diagnostics.Process"/> cannot do: start a child in a new session
/// with its stdio redirected to files (<c>posix_spawn</c> + <c>POSIX_SPAWN_SETSID</c>), reap it
/// (<c>waitpid</c>), and signal it (<c>kill</c>). glibc x86-64/arm64 only.
/// </summary>
internal static unsafe partial class ProcessInterop
{
    public const int SIGKILL = 9;
    public const int SIGTERM = 15;
    public const int ESRCH = 3;
    public const int ECHILD = 10;

    private const int O_WRONLY = 1;
    private const int O_APPEND = 0x400;
    private const int O_CREAT = 0x40;

    // glibc <spawn.h>
    private const short POSIX_SPAWN_SETSIGDEF = 0x04;
    private const short POSIX_SPAWN_SETSIGMASK = 0x08;
    private const short POSIX_SPAWN_SETSID = 0x80;

    // Opaque glibc structures; generously over-allocated (glibc: 80, 336 and 128 bytes).
    private const int FileActionsBytes = 512;
    private const int SpawnAttrBytes = 1024;
    private const int SigSetBytes = 256;

    [LibraryImport(Libc.Lib, EntryPoint = "posix_spawn", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int PosixSpawn(out int pid, string path, void* fileActions, void* attr, byte** argv, byte** envp);

    [LibraryImport(Libc.Lib, EntryPoint = "posix_spawn_file_actions_init")]
    private static partial int FileActionsInit(void* fileActions);

    [LibraryImport(Libc.Lib, EntryPoint = "posix_spawn_file_actions_destroy")]
    private static partial int FileActionsDestroy(void* fileActions);

    [LibraryImport(Libc.Lib, EntryPoint = "posix_spawn_file_actions_addopen", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int FileActionsAddOpen(void* fileActions, int fd, string path, int flags, uint mode);

    [LibraryImport(Libc.Lib, EntryPoint = "posix_spawn_file_actions_adddup2")]
    private static partial int FileActionsAddDup2(void* fileActions, int fd, int newFd);

    [LibraryImport(Libc.Lib, EntryPoint = "posix_spawn_file_actions_addclosefrom_np")]
    private static partial int FileActionsAddCloseFrom(void* fileActions, int fromFd);

    [LibraryImport(Libc.Lib, EntryPoint = "posix_spawnattr_init")]
    private static partial int AttrInit(void* attr);

    [LibraryImport(Libc.Lib, EntryPoint = "posix_spawnattr_destroy")]
    private static partial int AttrDestroy(void* attr);

    [LibraryImport(Libc.Lib, EntryPoint = "posix_spawnattr_setflags")]
    private static partial int AttrSetFlags(void* attr, short flags);

    [LibraryImport(Libc.Lib, EntryPoint = "posix_spawnattr_setsigmask")]
    private static partial int AttrSetSigMask(void* attr, void* mask);

    [LibraryImport(Libc.Lib, EntryPoint = "posix_spawnattr_setsigdefault")]
    private static partial int AttrSetSigDefault(void* attr, void* set);

    [LibraryImport(Libc.Lib, EntryPoint = "sigemptyset")]
    private static partial int SigEmptySet(void* set);

    [LibraryImport(Libc.Lib, EntryPoint = "sigaddset")]
    private static partial int SigAddSet(void* set, int signal);

    [LibraryImport(Libc.Lib, EntryPoint = "waitpid", SetLastError = true)]
    public static partial int WaitPid(int pid, out int status, int options);

    [LibraryImport(Libc.Lib, EntryPoint = "kill", SetLastError = true)]
    public static partial int Kill(int pid, int signal);

    /// <summary>
    /// True if <paramref name="pid"/> names a process that has not exited. A zombie (state Z: exited, not yet
    /// reaped, as under a PID 1 that does not reap) and a dying process (X) count as exited; so does a pid
    /// with no /proc entry. Reads the state field of <c>/proc/PID/stat</c>, which follows the last ')' (the
    /// command name in parentheses may itself contain ')' or spaces).
    /// </summary>
    public static bool IsRunning(int pid)
    {
        if (pid <= 0)
            return false;
        string stat;
        try
        {
            stat = File.ReadAllText($"/proc/{pid.ToString(System.Globalization.CultureInfo.InvariantCulture)}/stat");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
        var close = stat.LastIndexOf(')');
        if (close < 0 || close + 2 >= stat.Length)
            return false;
        return stat[close + 2] is not ('Z' or 'X' or 'x');
    }

    /// <summary>
    /// Starts <paramref name="path"/> in a new session (no controlling terminal, its own process group, so a
    /// closing terminal or Ctrl+C in the caller does not reach it), with every signal at its default
    /// disposition and none blocked (.NET ignores SIGPIPE, which exec would otherwise pass on), stdin from
    /// /dev/null, stdout and stderr appended to <paramref name="outputPath"/>, and no other inherited
    /// descriptor. Returns the child's pid; throws <see cref="IOException"/> naming the binary on failure.
    /// </summary>
    public static int SpawnDetached(string path, IReadOnlyList<string> argv, IReadOnlyList<string> environment, string outputPath) =>
        SpawnDetached(path, argv, environment, outputPath, null);

    /// <summary>
    /// <see cref="SpawnDetached(string, IReadOnlyList{string}, IReadOnlyList{string}, string)"/> with stdout and stderr on
    /// <paramref name="output"/>, a file the caller opened (without following links: <see cref="NoFollowFile"/>); the
    /// child gets it as fds 1 and 2, the caller keeps its own descriptor.
    /// </summary>
    public static int SpawnDetached(string path, IReadOnlyList<string> argv, IReadOnlyList<string> environment, SafeHandle output) =>
        SpawnDetached(path, argv, environment, null, output);

    private static int SpawnDetached(string path, IReadOnlyList<string> argv, IReadOnlyList<string> environment, string? outputPath, SafeHandle? output)
    {
        var fileActions = NativeMemory.AllocZeroed(FileActionsBytes);
        var attr = NativeMemory.AllocZeroed(SpawnAttrBytes);
        var sigMask = NativeMemory.AllocZeroed(SigSetBytes);
        var sigDefault = NativeMemory.AllocZeroed(SigSetBytes);
        var nativeArgv = AllocStringArray(argv);
        var nativeEnvp = AllocStringArray(environment);
        bool actionsReady = false, attrReady = false;
        try
        {
            Check(FileActionsInit(fileActions), "posix_spawn_file_actions_init");
            actionsReady = true;
            Check(FileActionsAddOpen(fileActions, 0, "/dev/null", Libc.O_RDONLY, 0), "open /dev/null");
            if (output is not null)
                Check(FileActionsAddDup2(fileActions, (int)output.DangerousGetHandle(), 1), "dup2 output");
            else
                Check(FileActionsAddOpen(fileActions, 1, outputPath!, O_WRONLY | O_APPEND | O_CREAT, 0b110_100_000 /* 0640 */), $"open '{outputPath}'");
            Check(FileActionsAddDup2(fileActions, 1, 2), "dup2");
            try
            {
                // .NET opens its descriptors close-on-exec, but native code loaded into the caller (pwsh
                // modules) may not; the VMM must not keep the caller's pipes or files open.
                Check(FileActionsAddCloseFrom(fileActions, 3), "posix_spawn_file_actions_addclosefrom_np");
            }
            catch (EntryPointNotFoundException)
            {
                // glibc < 2.34: rely on close-on-exec.
            }

            Check(AttrInit(attr), "posix_spawnattr_init");
            attrReady = true;
            SigEmptySet(sigMask);
            SigEmptySet(sigDefault);
            for (var signal = 1; signal < 32; signal++)
                if (signal is not SIGKILL and not 19 /* SIGSTOP */)
                    SigAddSet(sigDefault, signal);
            Check(AttrSetSigMask(attr, sigMask), "posix_spawnattr_setsigmask");
            Check(AttrSetSigDefault(attr, sigDefault), "posix_spawnattr_setsigdefault");
            Check(AttrSetFlags(attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF), "posix_spawnattr_setflags");

            var error = PosixSpawn(out var pid, path, fileActions, attr, nativeArgv, nativeEnvp);
            if (error != 0)
                throw new IOException($"Cannot start '{path}': {Libc.Describe(error)}");
            return pid;
        }
        finally
        {
            if (actionsReady)
                FileActionsDestroy(fileActions);
            if (attrReady)
                AttrDestroy(attr);
            FreeStringArray(nativeArgv, argv.Count);
            FreeStringArray(nativeEnvp, environment.Count);
            NativeMemory.Free(fileActions);
            NativeMemory.Free(attr);
            NativeMemory.Free(sigMask);
            NativeMemory.Free(sigDefault);
        }
    }

    private static void Check(int result, string what)
    {
        // posix_spawn* functions return the error number instead of setting errno.
        if (result != 0)
            throw new IOException($"{what} failed: {Libc.Describe(result)}");
    }

    private static byte** AllocStringArray(IReadOnlyList<string> strings)
    {
        var array = (byte**)NativeMemory.AllocZeroed((nuint)(strings.Count + 1), (nuint)sizeof(byte*));
        for (var i = 0; i < strings.Count; i++)
            array[i] = (byte*)Marshal.StringToCoTaskMemUTF8(strings[i]);
        return array;
    }

    private static void FreeStringArray(byte** array, int count)
    {
        for (var i = 0; i < count; i++)
            Marshal.FreeCoTaskMem((IntPtr)array[i]);
        NativeMemory.Free(array);
    }
}
