using System.Runtime.InteropServices;

namespace KvmPS.Interop;

/// <summary>An owned file descriptor. Raw fd integers stay inside Interop.</summary>
public abstract class FileDescriptorHandle : SafeHandle
{
    protected FileDescriptorHandle() : base(-1, ownsHandle: true) { }
    protected FileDescriptorHandle(int fd) : base(-1, ownsHandle: true) => SetHandle(fd);

    public override bool IsInvalid => handle < 0;

    internal int Fd => (int)handle;

    protected override bool ReleaseHandle() => Libc.Close((int)handle) == 0;
}

/// <summary>The /dev/kvm system fd.</summary>
public sealed class KvmSystemHandle : FileDescriptorHandle
{
    internal KvmSystemHandle(int fd) : base(fd) { }
}

/// <summary>A VM fd from KVM_CREATE_VM.</summary>
public sealed class KvmVmHandle : FileDescriptorHandle
{
    internal KvmVmHandle(int fd) : base(fd) { }
}

/// <summary>A vCPU fd from KVM_CREATE_VCPU.</summary>
public sealed class KvmVcpuHandle : FileDescriptorHandle
{
    internal KvmVcpuHandle(int fd) : base(fd) { }
}

/// <summary>An eventfd (irqfd, ioeventfd, thread wake-ups).</summary>
public sealed unsafe class EventFdHandle : FileDescriptorHandle
{
    private EventFdHandle(int fd) : base(fd) { }

    public static EventFdHandle Create(bool nonBlocking = true)
    {
        int fd = Libc.EventFd(0, Libc.EFD_CLOEXEC | (nonBlocking ? Libc.EFD_NONBLOCK : 0));
        if (fd < 0) throw NativeCallException.FromLastError("eventfd");
        return new EventFdHandle(fd);
    }

    public void Signal()
    {
        ulong one = 1;
        if (Libc.Write(Fd, &one, 8) != 8)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno != Libc.EAGAIN) throw new NativeCallException("write(eventfd)", errno);
        }
    }

    /// <summary>Reads and resets the counter; 0 when nothing was pending (non-blocking fd).</summary>
    public ulong Consume()
    {
        ulong value = 0;
        return Libc.Read(Fd, &value, 8) == 8 ? value : 0;
    }

    /// <summary>
    /// Waits in one poll(2) until this eventfd or <paramref name="other"/> has been signalled, at most
    /// <paramref name="timeoutMs"/> (-1: no limit); reads neither. Which one is readable: (false, false) after the
    /// timeout or a signal (EINTR); null when poll failed otherwise or reported an error on either descriptor.
    /// </summary>
    public (bool This, bool Other)? WaitForEither(EventFdHandle other, int timeoutMs)
    {
        var fds = stackalloc Libc.PollFd[2];
        fds[0] = new Libc.PollFd { fd = Fd, events = Libc.POLLIN };
        fds[1] = new Libc.PollFd { fd = other.Fd, events = Libc.POLLIN };
        int ready = Libc.Poll(fds, 2, timeoutMs);
        if (ready < 0) return Marshal.GetLastPInvokeError() == Libc.EINTR ? (false, false) : null;
        if (((fds[0].revents | fds[1].revents) & Libc.POLLERR_HUP_NVAL) != 0) return null;
        return ((fds[0].revents & Libc.POLLIN) != 0, (fds[1].revents & Libc.POLLIN) != 0);
    }
}
