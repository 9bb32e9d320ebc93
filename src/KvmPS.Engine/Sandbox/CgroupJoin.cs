using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using KvmPS.Interop;

namespace KvmPS.Sandbox;

/// <summary>
/// The move of this process into cgroup folders <see cref="VmmCgroup.Prepare"/> made: its pid written to each
/// folder's cgroup.procs, on a thread of its own (<see cref="Start"/>), waited for with <see cref="Wait"/>. The files
/// are opened by <see cref="Open"/>, as root before the jail: the kernel lets such a file be written after the drop
/// (v1: the opener was root, and the task moved is the writer's own; v2: it checks the opener's credentials since the
/// fix for CVE-2021-4197, see <see cref="MovableAfterDrop"/>), so the move can be made while the guest already runs. The thread writes and closes only, which the main thread's seccomp
/// filter (inherited by a thread it starts) allows.
/// </summary>
public sealed class CgroupJoin(IReadOnlyList<string> folders, bool movableAfterDrop = true)
{
    private Thread? _thread;
    private int[]? _fds;
    private bool _moved, _startedAsRoot;
    private string? _failure;
    private volatile int _tid;

    public IReadOnlyList<string> Folders { get; } = folders;

    /// <summary>
    /// False where the kernel checks the writer's credentials rather than the opener's (cgroup v2 before Linux 5.16,
    /// the CVE-2021-4197 fix): there the move must be made before the VMM drops root.
    /// </summary>
    public bool MovableAfterDrop { get; } = movableAfterDrop;

    /// <summary>True once <see cref="Start"/> was called: a second call (a guest reboot's) does nothing.</summary>
    public bool Started => _thread is not null || _moved;

    /// <summary>Opens every folder's cgroup.procs for writing, as the caller now is.</summary>
    /// <exception cref="SandboxException">A file could not be opened (named).</exception>
    public void Open()
    {
        if (_fds is not null) return;
        var fds = new int[Folders.Count];
        for (int i = 0; i < fds.Length; i++)
        {
            string procs = Path.Join(Folders[i], "cgroup.procs");
            fds[i] = Libc.Open(procs, Libc.O_WRONLY | Libc.O_CLOEXEC, 0);
            if (fds[i] >= 0) continue;
            int error = Marshal.GetLastPInvokeError();
            for (int j = 0; j < i; j++) Libc.Close(fds[j]);
            throw new SandboxException($"cgroup: {procs} cannot be opened for writing: {Libc.Describe(error)}");
        }
        _fds = fds;
    }

    public void Start()
    {
        if (Started) return;
        _startedAsRoot = Libc.GetEuid() == 0;
        _thread = new Thread(MoveIn) { IsBackground = true, Name = "cgroup-join" };
        _thread.Start();
    }

    /// <summary>Closes the files <see cref="Open"/> opened when the move was never started (a start that failed first).</summary>
    public void CloseUnstarted()
    {
        if (Started || _fds is null) return;
        foreach (int fd in _fds) Libc.Close(fd);
        _fds = null;
    }

    /// <summary>Waits for the move; a failure is this start's, naming the file.</summary>
    /// <exception cref="SandboxException">A cgroup.procs file could not be written.</exception>
    public void Wait()
    {
        if (_thread is null) return; // not started, or waited for already (a guest reboot asks again)
        _thread.Join();
        // Joined is not gone: the OS thread may still be exiting, as root. The jail's drop to its user (glibc changes
        // every live thread's credentials) skips an exiting thread, so wait until the kernel has reaped it. A thread
        // started after the drop was never root: nothing to wait for.
        var gone = System.Diagnostics.Stopwatch.StartNew();
        while (_startedAsRoot && _tid != 0 && Directory.Exists($"/proc/self/task/{_tid}"))
        {
            if (gone.ElapsedMilliseconds > 1000) throw new SandboxException($"cgroup: the thread that joined {string.Join(", ", Folders)} (tid {_tid}) has not exited after 1 s");
            Thread.Yield();
        }
        _thread = null;
        _moved = true;
        if (_failure is { } failure) throw new SandboxException(failure);
    }

    private unsafe void MoveIn()
    {
        _tid = Libc.GetTid();
        byte[] pid = Encoding.ASCII.GetBytes(Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
        try { Open(); }
        catch (SandboxException e) { _failure = e.Message; return; }
        for (int i = 0; i < _fds!.Length; i++)
        {
            int error = 0;
            fixed (byte* p = pid)
            {
                nint written = Libc.Write(_fds[i], p, (nuint)pid.Length);
                if (written < 0) error = Marshal.GetLastPInvokeError();
                else if (written != pid.Length) error = Libc.EIO; // a pid is one write: a short one did not join
            }
            if (error == 0) continue;
            _failure = $"cgroup: writing '{Encoding.ASCII.GetString(pid)}' to {Path.Join(Folders[i], "cgroup.procs")} failed: {Libc.Describe(error)}";
            break;
        }
        foreach (int fd in _fds) Libc.Close(fd);
        _fds = null;
    }
}
