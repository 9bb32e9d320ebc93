using System.Buffers.Binary;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace KvmPS.VfioUserTestDevice;

/// <summary>vfio-user numbers (QEMU docs/interop/vfio-user.rst; the structs reuse linux/vfio.h's).</summary>
internal static class VfioUser
{
    public const int HeaderBytes = 16;
    public const ushort VERSION = 1, DMA_MAP = 2, DMA_UNMAP = 3, DEVICE_GET_INFO = 4, DEVICE_GET_REGION_INFO = 5,
        DEVICE_GET_REGION_IO_FDS = 6, DEVICE_GET_IRQ_INFO = 7, DEVICE_SET_IRQS = 8, REGION_READ = 9, REGION_WRITE = 10,
        DMA_READ = 11, DMA_WRITE = 12, DEVICE_RESET = 13;
    // Header flags: bits 0-3 the type, bit 4 no reply wanted, bit 5 error.
    public const uint FLAG_TYPE_MASK = 0xf, TYPE_COMMAND = 0, TYPE_REPLY = 1, FLAG_NO_REPLY = 0x10, FLAG_ERROR = 0x20;
    public const ushort MajorVersion = 0, MinorVersion = 1;
    /// <summary>The largest message (header included) either side accepts; announced as max_data_xfer_size plus room for headers.</summary>
    public const int MaxDataTransferBytes = 1 << 20, MaxMessageBytes = MaxDataTransferBytes + 4096, MaxFds = 8;
    // errno values carried in error replies.
    public const int EPERM = 1, ENOENT = 2, EIO = 5, EBADF = 9, ENOMEM = 12, EFAULT = 14, EEXIST = 17, EINVAL = 22, ENOSPC = 28, ENOSYS = 38;
}

/// <summary>One message: the header's fields, its payload (after the header) and the fds that came with it.</summary>
internal sealed class Message
{
    public ushort Id;
    public ushort Command;
    public uint Flags;
    public uint Error;
    public byte[] Payload = [];
    public List<int> Fds = [];

    public bool IsCommand => (Flags & VfioUser.FLAG_TYPE_MASK) == VfioUser.TYPE_COMMAND;
}

/// <summary>A peer broke the framing (size outside the limits, stream ended mid-message): the connection cannot continue.</summary>
internal sealed class FramingException(string message) : Exception(message);

/// <summary>Reads and writes vfio-user messages on a connected Unix stream socket, fds as SCM_RIGHTS.</summary>
internal sealed unsafe class Connection(Socket socket)
{
    private readonly nint _fd = socket.Handle;

    /// <summary>The next message, or null when the peer closed the socket between messages.</summary>
    public Message? Receive()
    {
        var fds = new List<int>();
        var header = new byte[VfioUser.HeaderBytes];
        int got = ReadFully(header, fds, allowEof: true);
        if (got == 0) { CloseAll(fds); return null; }
        uint size = BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(4));
        if (size < VfioUser.HeaderBytes || size > VfioUser.MaxMessageBytes)
        {
            CloseAll(fds);
            throw new FramingException($"message size {size} outside {VfioUser.HeaderBytes}-{VfioUser.MaxMessageBytes}");
        }
        var payload = new byte[size - VfioUser.HeaderBytes];
        if (payload.Length > 0) ReadFully(payload, fds, allowEof: false);
        return new Message
        {
            Id = BinaryPrimitives.ReadUInt16LittleEndian(header),
            Command = BinaryPrimitives.ReadUInt16LittleEndian(header.AsSpan(2)),
            Flags = BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(8)),
            Error = BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(12)),
            Payload = payload,
            Fds = fds,
        };
    }

    /// <summary>Sends a reply to <paramref name="request"/>; a non-zero <paramref name="errno"/> makes it an error reply.</summary>
    public void Reply(Message request, ReadOnlySpan<byte> payload, int errno = 0, int fd = -1, uint? claimedSize = null)
    {
        var bytes = new byte[VfioUser.HeaderBytes + payload.Length];
        BinaryPrimitives.WriteUInt16LittleEndian(bytes, request.Id);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(2), request.Command);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(4), claimedSize ?? (uint)bytes.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(8), VfioUser.TYPE_REPLY | (errno != 0 ? VfioUser.FLAG_ERROR : 0));
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(12), (uint)errno);
        payload.CopyTo(bytes.AsSpan(VfioUser.HeaderBytes));
        Send(bytes, fd);
    }

    private void Send(byte[] bytes, int fd)
    {
        int space = Native.CmsgSpace(1);
        byte* control = stackalloc byte[space];
        new Span<byte>(control, space).Clear();
        int offset = 0;
        fixed (byte* p = bytes)
        {
            while (offset < bytes.Length)
            {
                var iov = new IoVec { Base = p + offset, Len = (nuint)(bytes.Length - offset) };
                var msg = new MsgHdr { Iov = &iov, IovLen = 1 };
                if (fd >= 0 && offset == 0)
                {
                    var cmsg = (CmsgHdr*)control;
                    cmsg->Len = (nuint)(sizeof(CmsgHdr) + sizeof(int));
                    cmsg->Level = Native.SOL_SOCKET;
                    cmsg->Type = Native.SCM_RIGHTS;
                    *(int*)(control + sizeof(CmsgHdr)) = fd;
                    msg.Control = control;
                    msg.ControlLen = (nuint)space;
                }
                nint sent = Native.Sendmsg(_fd, &msg, Native.MSG_NOSIGNAL);
                if (sent < 0)
                {
                    int errno = Marshal.GetLastPInvokeError();
                    if (errno == Native.EINTR) continue;
                    throw new IOException($"sendmsg failed: errno {errno}");
                }
                offset += (int)sent;
            }
        }
    }

    private int ReadFully(byte[] buffer, List<int> fds, bool allowEof)
    {
        int space = Native.CmsgSpace(VfioUser.MaxFds);
        byte* control = stackalloc byte[space];
        int offset = 0;
        fixed (byte* p = buffer)
        {
            while (offset < buffer.Length)
            {
                var iov = new IoVec { Base = p + offset, Len = (nuint)(buffer.Length - offset) };
                var msg = new MsgHdr { Iov = &iov, IovLen = 1, Control = control, ControlLen = (nuint)space };
                nint got = Native.Recvmsg(_fd, &msg, Native.MSG_CMSG_CLOEXEC);
                if (got < 0)
                {
                    int errno = Marshal.GetLastPInvokeError();
                    if (errno == Native.EINTR) continue;
                    if (offset == 0 && allowEof) return 0; // a reset connection between messages is a close
                    throw new FramingException($"recvmsg failed: errno {errno}");
                }
                CollectFds(&msg, fds);
                if (got == 0)
                {
                    if (offset == 0 && allowEof) return 0;
                    throw new FramingException($"stream ended after {offset} of {buffer.Length} bytes");
                }
                offset += (int)got;
            }
        }
        return offset;
    }

    private static void CollectFds(MsgHdr* msg, List<int> fds)
    {
        byte* at = (byte*)msg->Control;
        byte* end = at + msg->ControlLen;
        while (msg->ControlLen >= (nuint)sizeof(CmsgHdr) && at + sizeof(CmsgHdr) <= end)
        {
            var cmsg = (CmsgHdr*)at;
            if (cmsg->Len < (nuint)sizeof(CmsgHdr) || at + (int)cmsg->Len > end) break;
            if (cmsg->Level == Native.SOL_SOCKET && cmsg->Type == Native.SCM_RIGHTS)
            {
                int count = ((int)cmsg->Len - sizeof(CmsgHdr)) / sizeof(int);
                for (int i = 0; i < count; i++) fds.Add(((int*)(at + sizeof(CmsgHdr)))[i]);
            }
            at += ((int)cmsg->Len + 7) & ~7;
        }
    }

    public static void CloseAll(List<int> fds)
    {
        foreach (int fd in fds) Native.Close(fd);
        fds.Clear();
    }
}
