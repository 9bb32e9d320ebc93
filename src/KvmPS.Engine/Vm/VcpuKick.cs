using System.Runtime.InteropServices;
using KvmPS.Interop;

namespace KvmPS.Vm;

/// <summary>
/// Gets a vCPU thread out of KVM_RUN: set kvm_run.immediate_exit (closes the race with a thread about to enter)
/// and send a signal whose handler does nothing, so the ioctl returns EINTR.
/// </summary>
internal static unsafe class VcpuKick
{
    /// <summary>SIGRTMIN+6: clear of the signals the .NET runtime uses (SIGRTMIN for activation injection).</summary>
    public const int Signal = 40;
    private static int s_installed;

    public static void EnsureHandlerInstalled()
    {
        if (Interlocked.Exchange(ref s_installed, 1) == 1) return;
        // The handler must not run managed code (it can land on a thread in any state), so it is a native
        // function that does nothing harmful: libc's getpid, async-signal-safe and argument-agnostic.
        nint libc = NativeLibrary.Load("libc.so.6");
        var action = new Libc.SigAction { sa_handler = NativeLibrary.GetExport(libc, "getpid"), sa_flags = 0 }; // no SA_RESTART: KVM_RUN must return EINTR
        if (Libc.Sigaction(Signal, &action, null) != 0) throw NativeCallException.FromLastError("sigaction");
    }

    public static void Kick(nuint pthread, kvm_run* run)
    {
        run->immediate_exit = 1;
        if (pthread != 0) Libc.PthreadKill(pthread, Signal);
    }
}
