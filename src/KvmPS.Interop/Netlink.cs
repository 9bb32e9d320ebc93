using System.Runtime.InteropServices;

namespace KvmPS.Interop;

/// <summary>
/// rtnetlink (netlink(7), rtnetlink(7)) for the one request KvmPS sends: RTM_SETLINK with IFLA_VFINFO_LIST, i.e.
/// what <c>ip link set PF vf N mac … vlan …</c> does. Constants keep the names of &lt;linux/netlink.h&gt;,
/// &lt;linux/rtnetlink.h&gt; and &lt;linux/if_link.h&gt;; the structs are checked against them in the layout tests.
/// </summary>
internal static unsafe partial class Netlink
{
    public const int AF_NETLINK = 16, SOCK_RAW = 3, SOCK_CLOEXEC = 0x80000, NETLINK_ROUTE = 0;
    public const ushort NLMSG_ERROR = 2, RTM_NEWLINK = 16, RTM_GETLINK = 18, RTM_SETLINK = 19;
    public const ushort NLM_F_REQUEST = 0x1, NLM_F_ACK = 0x4;
    public const ushort IFLA_IFNAME = 3, IFLA_VFINFO_LIST = 22, IFLA_EXT_MASK = 29;
    public const uint RTEXT_FILTER_VF = 1;
    public const ushort NLA_TYPE_MASK = 0x3FFF; // without NLA_F_NESTED / NLA_F_NET_BYTEORDER
    public const ushort IFLA_VF_INFO = 1, IFLA_VF_MAC = 1, IFLA_VF_VLAN = 2;
    public const int NLMSGHDR_SIZE = 16, IFINFOMSG_SIZE = 16, NLA_HDRLEN = 4;

    /// <summary><c>struct ifla_vf_mac</c>: the VF index and a 32-byte address field (Ethernet uses the first 6).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct ifla_vf_mac
    {
        public uint vf;
        public fixed byte mac[32];
    }

    /// <summary><c>struct ifla_vf_vlan</c>: the VF index, its VLAN id (0 = none) and 802.1p priority.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct ifla_vf_vlan
    {
        public uint vf;
        public uint vlan;
        public uint qos;
    }

    /// <summary><c>struct sockaddr_nl</c>.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct sockaddr_nl
    {
        public ushort nl_family;
        public ushort nl_pad;
        public uint nl_pid;
        public uint nl_groups;
    }

    [LibraryImport(Libc.Lib, EntryPoint = "socket", SetLastError = true)]
    private static partial int Socket(int domain, int type, int protocol);

    [LibraryImport(Libc.Lib, EntryPoint = "sendto", SetLastError = true)]
    private static partial nint SendTo(int fd, byte* buffer, nuint length, int flags, sockaddr_nl* address, uint addressLength);

    [LibraryImport(Libc.Lib, EntryPoint = "recv", SetLastError = true)]
    private static partial nint Recv(int fd, byte* buffer, nuint length, int flags);

    [LibraryImport(Libc.Lib, EntryPoint = "setsockopt", SetLastError = true)]
    private static partial int SetSockOpt(int fd, int level, int name, void* value, uint length);

    private const int SOL_SOCKET = 1, SO_RCVTIMEO = 20;

    /// <summary>
    /// Sends one rtnetlink request (with NLM_F_ACK) to the kernel and waits for its answer: 0 when acknowledged, else
    /// the positive errno the kernel reported. A socket error is a <see cref="NativeCallException"/>.
    /// </summary>
    public static int Request(ReadOnlySpan<byte> message, uint sequence) => Exchange(message, sequence, 0, out _);

    /// <summary>
    /// Sends one rtnetlink get request and waits for the kernel's answer of type <paramref name="replyType"/> (its whole
    /// message, header included, in <paramref name="reply"/>): 0, or the positive errno the kernel reported instead.
    /// </summary>
    public static int Query(ReadOnlySpan<byte> message, uint sequence, ushort replyType, out byte[] reply) =>
        Exchange(message, sequence, replyType, out reply);

    private static int Exchange(ReadOnlySpan<byte> message, uint sequence, ushort replyType, out byte[] reply)
    {
        reply = [];
        int fd = Socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
        if (fd < 0) throw NativeCallException.FromLastError("socket(AF_NETLINK)");
        try
        {
            // A kernel always answers an NLM_F_ACK request; the timeout only guards against a wedged socket.
            long* timeout = stackalloc long[2] { 5, 0 };
            SetSockOpt(fd, SOL_SOCKET, SO_RCVTIMEO, timeout, 16);
            var kernel = new sockaddr_nl { nl_family = AF_NETLINK };
            fixed (byte* p = message)
                if (SendTo(fd, p, (nuint)message.Length, 0, &kernel, (uint)sizeof(sockaddr_nl)) != message.Length)
                    throw NativeCallException.FromLastError("sendto(NETLINK_ROUTE)");
            var buffer = new byte[256 * 1024]; // a PF's link message lists every VF: tens of KiB with many VFs
            while (true)
            {
                nint received;
                fixed (byte* p = buffer)
                    received = Recv(fd, p, (nuint)buffer.Length, 0);
                if (received < 0)
                {
                    if (Marshal.GetLastPInvokeError() == Libc.EINTR) continue;
                    throw NativeCallException.FromLastError("recv(NETLINK_ROUTE)");
                }
                for (int offset = 0; offset + NLMSGHDR_SIZE <= received;)
                {
                    var length = BitConverter.ToUInt32(buffer, offset);
                    var type = BitConverter.ToUInt16(buffer, offset + 4);
                    var seq = BitConverter.ToUInt32(buffer, offset + 8);
                    if (length < NLMSGHDR_SIZE || offset + length > received) break;
                    if (type == NLMSG_ERROR && seq == sequence && length >= NLMSGHDR_SIZE + 4)
                        return -BitConverter.ToInt32(buffer, offset + NLMSGHDR_SIZE);
                    if (replyType != 0 && type == replyType && seq == sequence)
                    {
                        reply = buffer.AsSpan(offset, (int)length).ToArray();
                        return 0;
                    }
                    offset += (int)((length + 3) & ~3u);
                }
            }
        }
        finally
        {
            Libc.Close(fd);
        }
    }
}
