using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace KvmPS.Interop;

/// <summary>
/// Descriptors passed with a control request (SCM_RIGHTS, docs/vmm.md "Passing open files"): received without
/// blocking and without throwing on too many (the request is refused instead, its descriptors closed), duplicated to
/// keep a device's host resource open across a guest reboot.
/// </summary>
public static unsafe class PassedDescriptors
{
    private const int MSG_DONTWAIT = 0x40, F_DUPFD_CLOEXEC = 1030;

    /// <summary>
    /// One recvmsg without waiting: up to <paramref name="buffer"/>.Length bytes; the descriptors that came with them
    /// (at most <see cref="UnixFdPassing.MaxFds"/>; the kernel closes any beyond, and <paramref name="truncated"/> says
    /// so) are added to <paramref name="fds"/>, close-on-exec. Returns the bytes read, 0 at the end of the stream, -1
    /// when nothing is queued (EAGAIN). Other errors throw.
    /// </summary>
    public static int Receive(SafeHandle socket, Span<byte> buffer, List<SafeFileHandle> fds, out bool truncated)
    {
        truncated = false;
        int space = Libc.CmsgSpaceForFds(UnixFdPassing.MaxFds);
        byte* control = stackalloc byte[space];
        new Span<byte>(control, space).Clear();
        bool added = false;
        socket.DangerousAddRef(ref added);
        try
        {
            fixed (byte* p = buffer)
            {
                var iov = new iovec { iov_base = p, iov_len = (nuint)buffer.Length };
                var message = new msghdr { msg_iov = &iov, msg_iovlen = 1, msg_control = control, msg_controllen = (nuint)space };
                nint got;
                do got = Libc.Recvmsg(socket.DangerousGetHandle(), &message, Libc.MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
                while (got < 0 && Marshal.GetLastPInvokeError() == Libc.EINTR);
                if (got < 0)
                {
                    if (Marshal.GetLastPInvokeError() == Libc.EAGAIN) return -1;
                    throw NativeCallException.FromLastError("recvmsg");
                }
                Span<int> received = stackalloc int[UnixFdPassing.MaxFds];
                foreach (int fd in received[..UnixFdPassing.ReceivedDescriptors(control, message, received)])
                    fds.Add(new SafeFileHandle(fd, ownsHandle: true));
                truncated = (message.msg_flags & Libc.MSG_CTRUNC) != 0;
                return (int)got;
            }
        }
        finally
        {
            if (added) socket.DangerousRelease();
        }
    }

    /// <summary>A second descriptor of the same open file (its offset, flags and OFD locks shared), close-on-exec.</summary>
    public static SafeFileHandle Duplicate(SafeHandle handle)
    {
        bool added = false;
        handle.DangerousAddRef(ref added);
        try
        {
            int fd = Libc.FcntlInt((int)handle.DangerousGetHandle(), F_DUPFD_CLOEXEC, 0);
            if (fd < 0) throw NativeCallException.FromLastError("fcntl(F_DUPFD_CLOEXEC)");
            return new SafeFileHandle(fd, ownsHandle: true);
        }
        finally
        {
            if (added) handle.DangerousRelease();
        }
    }

    /// <summary>True when <paramref name="handle"/> is an open descriptor of this process (fcntl F_GETFD answers).</summary>
    public static bool IsOpen(SafeHandle handle) => !handle.IsInvalid && !handle.IsClosed && Libc.FcntlInt((int)handle.DangerousGetHandle(), 1 /* F_GETFD */, 0) >= 0;
}
