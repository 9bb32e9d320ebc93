using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using KvmPS.Interop;

namespace KvmPS.Management.HostDevices;

/// <summary>A VF MAC/VLAN request the kernel refused (or could not be sent); names the PF interface and VF.</summary>
public sealed class VfNetlinkException(string physicalInterface, int vf, string reason)
    : Exception($"VF {vf} of {physicalInterface}: {reason}")
{
    public string PhysicalInterface { get; } = physicalInterface;
    public int Vf { get; } = vf;
}

/// <summary>A VF's administrative MAC address and VLAN as its physical function holds them (VLAN 0: none).</summary>
public sealed record VfSettings(byte[] Mac, int Vlan)
{
    /// <summary>"aa:bb:cc:dd:ee:ff vlan N", as the VF state file and messages write it.</summary>
    public override string ToString() => $"{VfNetlink.FormatMac(Mac)} vlan {Vlan}";
}

/// <summary>Reads and sets a VF's MAC and VLAN on its physical function; an interface so tests can record the requests instead of sending them.</summary>
public interface IVfNetlink
{
    /// <summary>As <see cref="VfNetlink.SetVf"/>: <paramref name="vlan"/> 0 clears the VLAN.</summary>
    void SetVf(string physicalInterface, int vf, ReadOnlySpan<byte> mac, int? vlan);

    /// <summary>As <see cref="VfNetlink.GetVf"/>: the VF's MAC and VLAN now.</summary>
    VfSettings GetVf(string physicalInterface, int vf);
}

/// <summary>The kernel's rtnetlink: <see cref="VfNetlink.SetVf"/>.</summary>
public sealed class KernelVfNetlink : IVfNetlink
{
    public static readonly KernelVfNetlink Instance = new();

    public void SetVf(string physicalInterface, int vf, ReadOnlySpan<byte> mac, int? vlan) => VfNetlink.SetVf(physicalInterface, vf, mac, vlan);

    public VfSettings GetVf(string physicalInterface, int vf) => VfNetlink.GetVf(physicalInterface, vf);
}

/// <summary>
/// Sets a network VF's MAC address and VLAN on its physical function over rtnetlink, as
/// <c>ip link set PF vf N mac M vlan V qos Q</c> does: one RTM_SETLINK for the PF (by name) carrying
/// IFLA_VFINFO_LIST → IFLA_VF_INFO → IFLA_VF_MAC (struct ifla_vf_mac) and IFLA_VF_VLAN (struct ifla_vf_vlan).
/// </summary>
public static class VfNetlink
{
    private const int VfMacSize = 36, VfVlanSize = 12, MaxVlanId = 4095, MaxQos = 7;

    /// <summary>Sends the request and waits for the kernel's acknowledgement; a refusal is a <see cref="VfNetlinkException"/> with the errno's text.</summary>
    public static void SetVf(string physicalInterface, int vf, ReadOnlySpan<byte> mac, int? vlan, int qos = 0)
    {
        var sequence = (uint)Environment.TickCount;
        var message = BuildSetVf(physicalInterface, vf, mac, vlan, qos, sequence);
        int error;
        try { error = Netlink.Request(message, sequence); }
        catch (NativeCallException e) { throw new VfNetlinkException(physicalInterface, vf, e.Message); }
        if (error != 0)
            throw new VfNetlinkException(physicalInterface, vf,
                $"the kernel refused 'ip link set {physicalInterface} vf {vf} mac {FormatMac(mac)}{(vlan is { } v ? $" vlan {v}" : "")}': {Libc.ErrorText(error)} (errno {error}).");
    }

    /// <summary>
    /// Reads VF <paramref name="vf"/>'s MAC and VLAN from its PF, as <c>ip link show PF</c> lists them: RTM_GETLINK
    /// for the PF by name with IFLA_EXT_MASK = RTEXT_FILTER_VF, the VF's IFLA_VF_MAC and IFLA_VF_VLAN from the reply's
    /// IFLA_VFINFO_LIST. A refusal, or a reply without the VF, is a <see cref="VfNetlinkException"/>.
    /// </summary>
    public static VfSettings GetVf(string physicalInterface, int vf)
    {
        var sequence = (uint)Environment.TickCount;
        int error;
        byte[] reply;
        try { error = Netlink.Query(BuildGetLink(physicalInterface, sequence), sequence, Netlink.RTM_NEWLINK, out reply); }
        catch (NativeCallException e) { throw new VfNetlinkException(physicalInterface, vf, e.Message); }
        if (error != 0)
            throw new VfNetlinkException(physicalInterface, vf, $"the kernel refused 'ip link show {physicalInterface}': {Libc.ErrorText(error)} (errno {error}).");
        return ParseVf(reply, vf) ?? throw new VfNetlinkException(physicalInterface, vf, $"{physicalInterface} lists no VF {vf} (IFLA_VFINFO_LIST); is it an SR-IOV PF with that many VFs?");
    }

    /// <summary>The RTM_GETLINK request for <paramref name="physicalInterface"/> with its VFs (IFLA_EXT_MASK = RTEXT_FILTER_VF).</summary>
    public static byte[] BuildGetLink(string physicalInterface, uint sequence)
    {
        var name = InterfaceName(physicalInterface);
        var buffer = new List<byte>(64);
        buffer.AddRange(new byte[Netlink.NLMSGHDR_SIZE + Netlink.IFINFOMSG_SIZE]);
        AddAttribute(buffer, Netlink.IFLA_IFNAME, name);
        var mask = new byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(mask, Netlink.RTEXT_FILTER_VF);
        AddAttribute(buffer, Netlink.IFLA_EXT_MASK, mask);
        var bytes = buffer.ToArray();
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, (uint)bytes.Length);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(4), Netlink.RTM_GETLINK);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(6), Netlink.NLM_F_REQUEST);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(8), sequence);
        return bytes;
    }

    /// <summary>VF <paramref name="vf"/>'s MAC and VLAN from an RTM_NEWLINK message (header included), or null when it does not list that VF. Malformed attributes end the walk.</summary>
    public static VfSettings? ParseVf(ReadOnlySpan<byte> message, int vf)
    {
        int start = Netlink.NLMSGHDR_SIZE + Netlink.IFINFOMSG_SIZE;
        if (message.Length < start) return null;
        int end = (int)Math.Min((uint)message.Length, BinaryPrimitives.ReadUInt32LittleEndian(message));
        if (end < start) return null;
        var link = message[..end];
        foreach (var (type, listAt, listLength) in Attributes(link, start, end))
        {
            if (type != Netlink.IFLA_VFINFO_LIST) continue;
            foreach (var (infoType, infoAt, infoLength) in Attributes(link, listAt, listAt + listLength))
            {
                if (infoType != Netlink.IFLA_VF_INFO) continue;
                byte[]? mac = null;
                int vlan = 0;
                bool ours = false;
                foreach (var (fieldType, at, length) in Attributes(link, infoAt, infoAt + infoLength))
                {
                    var field = link.Slice(at, length);
                    if (fieldType == Netlink.IFLA_VF_MAC && length >= VfMacSize)
                    {
                        ours = BinaryPrimitives.ReadUInt32LittleEndian(field) == (uint)vf;
                        mac = field.Slice(4, 6).ToArray();
                    }
                    else if (fieldType == Netlink.IFLA_VF_VLAN && length >= VfVlanSize)
                        vlan = (int)BinaryPrimitives.ReadUInt32LittleEndian(field[4..]);
                }
                if (ours && mac is not null) return new VfSettings(mac, vlan);
            }
        }
        return null;
    }

    /// <summary>The attributes between <paramref name="start"/> and <paramref name="end"/>: type (flag bits cleared), value offset and length.</summary>
    private static List<(ushort Type, int At, int Length)> Attributes(ReadOnlySpan<byte> data, int start, int end)
    {
        var result = new List<(ushort, int, int)>();
        for (int at = start; at + Netlink.NLA_HDRLEN <= end;)
        {
            int length = BinaryPrimitives.ReadUInt16LittleEndian(data[at..]);
            if (length < Netlink.NLA_HDRLEN || at + length > end) break;
            result.Add(((ushort)(BinaryPrimitives.ReadUInt16LittleEndian(data[(at + 2)..]) & Netlink.NLA_TYPE_MASK), at + Netlink.NLA_HDRLEN, length - Netlink.NLA_HDRLEN));
            at += (length + 3) & ~3;
        }
        return result;
    }

    private static byte[] InterfaceName(string physicalInterface)
    {
        ArgumentException.ThrowIfNullOrEmpty(physicalInterface);
        var name = Encoding.ASCII.GetBytes(physicalInterface);
        if (name.Length >= Tun.IFNAMSIZ)
            throw new ArgumentException($"interface name '{physicalInterface}' is longer than {Tun.IFNAMSIZ - 1} characters", nameof(physicalInterface));
        var value = new byte[name.Length + 1];
        name.CopyTo(value, 0);
        return value;
    }

    /// <summary>The RTM_SETLINK message bytes (host byte order, as netlink wants). <paramref name="vlan"/> null leaves the VLAN as it is; 0 clears it.</summary>
    public static byte[] BuildSetVf(string physicalInterface, int vf, ReadOnlySpan<byte> mac, int? vlan, int qos, uint sequence)
    {
        var nameValue = InterfaceName(physicalInterface);
        ArgumentOutOfRangeException.ThrowIfNegative(vf);
        if (mac.Length != 6)
            throw new ArgumentException($"a VF MAC address has 6 bytes, not {mac.Length}", nameof(mac));
        if (vlan is < 0 or > MaxVlanId)
            throw new ArgumentOutOfRangeException(nameof(vlan), vlan, $"a VLAN id is 0..{MaxVlanId}");
        if (qos is < 0 or > MaxQos)
            throw new ArgumentOutOfRangeException(nameof(qos), qos, $"an 802.1p priority is 0..{MaxQos}");

        var buffer = new List<byte>(128);
        buffer.AddRange(new byte[Netlink.NLMSGHDR_SIZE + Netlink.IFINFOMSG_SIZE]); // header filled in last; ifinfomsg all zero (AF_UNSPEC, index 0: by name)
        AddAttribute(buffer, Netlink.IFLA_IFNAME, nameValue);
        var list = BeginNest(buffer, Netlink.IFLA_VFINFO_LIST);
        var info = BeginNest(buffer, Netlink.IFLA_VF_INFO);
        var vfMac = new byte[VfMacSize];
        BinaryPrimitives.WriteUInt32LittleEndian(vfMac, (uint)vf);
        mac.CopyTo(vfMac.AsSpan(4));
        AddAttribute(buffer, Netlink.IFLA_VF_MAC, vfMac);
        if (vlan is int id)
        {
            var vfVlan = new byte[VfVlanSize];
            BinaryPrimitives.WriteUInt32LittleEndian(vfVlan, (uint)vf);
            BinaryPrimitives.WriteUInt32LittleEndian(vfVlan.AsSpan(4), (uint)id);
            BinaryPrimitives.WriteUInt32LittleEndian(vfVlan.AsSpan(8), (uint)qos);
            AddAttribute(buffer, Netlink.IFLA_VF_VLAN, vfVlan);
        }
        EndNest(buffer, info);
        EndNest(buffer, list);

        var bytes = buffer.ToArray();
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, (uint)bytes.Length);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(4), Netlink.RTM_SETLINK);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(6), Netlink.NLM_F_REQUEST | Netlink.NLM_F_ACK);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(8), sequence);
        return bytes; // nlmsg_pid 0: the kernel fills in the sender
    }

    /// <summary>Parses "aa:bb:cc:dd:ee:ff".</summary>
    public static byte[] ParseMac(string text)
    {
        var parts = text.Split(':');
        if (parts.Length != 6 || parts.Any(p => p.Length != 2))
            throw new FormatException($"'{text}' is not a MAC address (aa:bb:cc:dd:ee:ff)");
        return parts.Select(p => byte.Parse(p, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture)).ToArray();
    }

    public static string FormatMac(ReadOnlySpan<byte> mac) => Convert.ToHexString(mac).ToLowerInvariant() is var hex
        ? string.Join(':', Enumerable.Range(0, hex.Length / 2).Select(i => hex.Substring(i * 2, 2)))
        : "";

    private static void AddAttribute(List<byte> buffer, ushort type, ReadOnlySpan<byte> value)
    {
        Span<byte> header = stackalloc byte[Netlink.NLA_HDRLEN];
        BinaryPrimitives.WriteUInt16LittleEndian(header, (ushort)(Netlink.NLA_HDRLEN + value.Length));
        BinaryPrimitives.WriteUInt16LittleEndian(header[2..], type);
        buffer.AddRange(header);
        buffer.AddRange(value);
        while (buffer.Count % 4 != 0) buffer.Add(0); // NLA_ALIGN
    }

    // Nested attributes as iproute2's addattr_nest writes them: a plain header whose length covers the children.
    private static int BeginNest(List<byte> buffer, ushort type)
    {
        var start = buffer.Count;
        AddAttribute(buffer, type, ReadOnlySpan<byte>.Empty);
        return start;
    }

    private static void EndNest(List<byte> buffer, int start)
    {
        var length = (ushort)(buffer.Count - start);
        buffer[start] = (byte)length;
        buffer[start + 1] = (byte)(length >> 8);
    }
}
