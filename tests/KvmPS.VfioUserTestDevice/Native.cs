using System.Runtime.InteropServices;

namespace KvmPS.VfioUserTestDevice;

/// <summary>The few libc calls the server needs: fd passing, shared mappings, memfd, eventfd writes, and polling and reading INTx's unmask eventfd.</summary>
internal static unsafe partial class Native
{
    private const string Lib = "libc";
    public const int PROT_READ = 1, PROT_WRITE = 2, MAP_SHARED = 1;
    public const int SOL_SOCKET = 1, SCM_RIGHTS = 1, MSG_CMSG_CLOEXEC = 0x40000000, MSG_NOSIGNAL = 0x4000, MSG_CTRUNC = 0x8;
    public const int EINTR = 4;
    public const uint MFD_CLOEXEC = 1;

    [LibraryImport(Lib, EntryPoint = "sendmsg", SetLastError = true)]
    public static partial nint Sendmsg(nint socket, MsgHdr* message, int flags);

    [LibraryImport(Lib, EntryPoint = "recvmsg", SetLastError = true)]
    public static partial nint Recvmsg(nint socket, MsgHdr* message, int flags);

    [LibraryImport(Lib, EntryPoint = "mmap", SetLastError = true)]
    public static partial nint Mmap(nint addr, nuint length, int prot, int flags, int fd, long offset);

    [LibraryImport(Lib, EntryPoint = "munmap", SetLastError = true)]
    public static partial int Munmap(nint addr, nuint length);

    [LibraryImport(Lib, EntryPoint = "memfd_create", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int MemfdCreate(string name, uint flags);

    [LibraryImport(Lib, EntryPoint = "ftruncate", SetLastError = true)]
    public static partial int Ftruncate(int fd, long length);

    [LibraryImport(Lib, EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport(Lib, EntryPoint = "write", SetLastError = true)]
    public static partial nint Write(int fd, void* buf, nuint count);

    [LibraryImport(Lib, EntryPoint = "read", SetLastError = true)]
    public static partial nint Read(int fd, void* buf, nuint count);

    public const short POLLIN = 1;

    [StructLayout(LayoutKind.Sequential)]
    public struct PollFd
    {
        public int Fd;
        public short Events, Revents;
    }

    [LibraryImport(Lib, EntryPoint = "poll", SetLastError = true)]
    public static partial int Poll(PollFd* fds, nuint count, int timeoutMs);

    public static int CmsgSpace(int fds) => sizeof(CmsgHdr) + ((fds * sizeof(int) + 7) & ~7);
}

[StructLayout(LayoutKind.Sequential)]
internal unsafe struct MsgHdr
{
    public void* Name;
    public uint NameLen;
    public IoVec* Iov;
    public nuint IovLen;
    public void* Control;
    public nuint ControlLen;
    public int Flags;
}

[StructLayout(LayoutKind.Sequential)]
internal unsafe struct IoVec
{
    public void* Base;
    public nuint Len;
}

[StructLayout(LayoutKind.Sequential)]
internal struct CmsgHdr
{
    public nuint Len;
    public int Level;
    public int Type;
}
