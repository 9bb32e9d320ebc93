using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using KvmPS.Interop;

namespace KvmPS.Sandbox;

/// <summary>
/// The move of this process into cgroup folders <see cref="VmmCgroup.Prepare"/> made: its pid written to each
/// folder's cgroup.procs, on a thread of its own, waited for before the guest runs (<see cref="Wait"/>). The thread
/// writes with open/write/close only, which the main thread's seccomp filter (put on every thread) allows.
/// </summary>
public sealed class CgroupJoin(IReadOnlyList<string> folders)
{
    private Thread? _thread;
    private string? _failure;
    private volatile int _tid;

    public IReadOnlyList<string> Folders { get; } = folders;

    public void Start()
    {
        if (_thread is not null) return;
        _thread = new Thread(MoveIn) { IsBackground = true, Name = "cgroup-join" };
        _thread.Start();
    }

    /// <summary>Waits for the move; a failure is this start's, naming the file.</summary>
    /// <exception cref="SandboxException">A cgroup.procs file could not be written.</exception>
    public void Wait()
    {
        if (_thread is null) return; // not started, or waited for already (a guest reboot asks again)
        _thread.Join();
        // Joined is not gone: the OS thread may still be exiting, as root. The jail's drop to its user (glibc changes
        // every live thread's credentials) skips an exiting thread, so wait until the kernel has reaped it.
        var gone = System.Diagnostics.Stopwatch.StartNew();
        while (_tid != 0 && Directory.Exists($"/proc/self/task/{_tid}"))
        {
            if (gone.ElapsedMilliseconds > 1000) throw new SandboxException($"cgroup: the thread that joined {string.Join(", ", Folders)} (tid {_tid}) has not exited after 1 s");
            Thread.Yield();
        }
        _thread = null;
        if (_failure is { } failure) throw new SandboxException(failure);
    }

    private unsafe void MoveIn()
    {
        _tid = Libc.GetTid();
        byte[] pid = Encoding.ASCII.GetBytes(Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
        foreach (string folder in Folders)
        {
            string procs = Path.Join(folder, "cgroup.procs");
            int fd = Libc.Open(procs, Libc.O_WRONLY | Libc.O_CLOEXEC, 0);
            int error = fd < 0 ? Marshal.GetLastPInvokeError() : 0;
            if (fd >= 0)
            {
                fixed (byte* p = pid)
                {
                    nint written = Libc.Write(fd, p, (nuint)pid.Length);
                    if (written < 0) error = Marshal.GetLastPInvokeError();
                    else if (written != pid.Length) error = Libc.EIO; // a pid is one write: a short one did not join
                }
                Libc.Close(fd);
            }
            if (error != 0)
            {
                _failure = $"cgroup: writing '{Encoding.ASCII.GetString(pid)}' to {procs} failed: {Libc.Describe(error)}";
                return;
            }
        }
    }
}
