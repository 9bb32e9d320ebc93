using System.Runtime.InteropServices;

namespace KvmPS.Interop;

/// <summary>A failed system call: carries the call's name, the errno and what it was applied to.</summary>
public sealed class NativeCallException : IOException
{
    public string Call { get; }
    public int Errno { get; }

    public NativeCallException(string call, int errno, string? target = null)
        : base($"{call}{(target is null ? "" : $" ({target})")} failed: {Libc.ErrorText(errno)} (errno {errno})")
    {
        Call = call;
        Errno = errno;
        HResult = errno;
    }

    internal static NativeCallException FromLastError(string call, string? target = null)
        => new(call, Marshal.GetLastPInvokeError(), target);
}
