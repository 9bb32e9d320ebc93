using System.Runtime.InteropServices;
using KvmPS.Engine.Tests.Support;
using KvmPS.Interop;
using KvmPS.Management.HostDevices;
using Xunit;

namespace KvmPS.Engine.Tests.Interop;

/// <summary>
/// The rtnetlink VF request (<see cref="VfNetlink"/>) against the kernel headers: the structs and constants, and the
/// whole RTM_SETLINK message compared byte for byte with one a C program builds from &lt;linux/if_link.h&gt;'s
/// struct ifla_vf_mac / ifla_vf_vlan and the NLMSG/RTA macros, the way iproute2's <c>ip link set PF vf N</c> does.
/// </summary>
public class NetlinkLayoutTests
{
    private const string Headers = """
        #include <stdio.h>
        #include <stddef.h>
        #include <string.h>
        #include <sys/socket.h>
        #include <linux/netlink.h>
        #include <linux/rtnetlink.h>
        #include <linux/if_link.h>

        """;

    [Fact]
    public void StructsAndConstantsMatchTheHeaders()
    {
        var output = NativeCompiler.CompileAndRun(Headers + """
            int main(void){
            printf("%zu %zu %zu %zu\n", sizeof(struct ifla_vf_mac), offsetof(struct ifla_vf_mac, mac), sizeof(struct ifla_vf_vlan), offsetof(struct ifla_vf_vlan, qos));
            printf("%zu %zu %zu %d\n", sizeof(struct nlmsghdr), sizeof(struct ifinfomsg), sizeof(struct sockaddr_nl), NLA_HDRLEN);
            printf("%d %d %d %d %d %d\n", AF_NETLINK, NETLINK_ROUTE, NLMSG_ERROR, RTM_SETLINK, NLM_F_REQUEST, NLM_F_ACK);
            printf("%d %d %d %d %d\n", IFLA_IFNAME, IFLA_VFINFO_LIST, IFLA_VF_INFO, IFLA_VF_MAC, IFLA_VF_VLAN);
            return 0;}
            """, "netlink_layout").Split('\n', StringSplitOptions.RemoveEmptyEntries);

        Assert.Equal($"{Marshal.SizeOf<Netlink.ifla_vf_mac>()} {Marshal.OffsetOf<Netlink.ifla_vf_mac>("mac")} {Marshal.SizeOf<Netlink.ifla_vf_vlan>()} {Marshal.OffsetOf<Netlink.ifla_vf_vlan>("qos")}", output[0]);
        Assert.Equal($"{Netlink.NLMSGHDR_SIZE} {Netlink.IFINFOMSG_SIZE} {Marshal.SizeOf<Netlink.sockaddr_nl>()} {Netlink.NLA_HDRLEN}", output[1]);
        Assert.Equal($"{Netlink.AF_NETLINK} {Netlink.NETLINK_ROUTE} {Netlink.NLMSG_ERROR} {Netlink.RTM_SETLINK} {Netlink.NLM_F_REQUEST} {Netlink.NLM_F_ACK}", output[2]);
        Assert.Equal($"{Netlink.IFLA_IFNAME} {Netlink.IFLA_VFINFO_LIST} {Netlink.IFLA_VF_INFO} {Netlink.IFLA_VF_MAC} {Netlink.IFLA_VF_VLAN}", output[3]);
    }

    [Theory]
    [InlineData("enp3s0f0", 3, 100, 5)]
    [InlineData("eth1", 0, null, 0)]
    [InlineData("ens1f1np1", 63, 0, 0)]
    public void SetVfMessageMatchesOneBuiltFromTheKernelStructs(string name, int vf, int? vlan, int qos)
    {
        byte[] mac = [0x52, 0x54, 0x00, 0x12, 0x34, (byte)vf];
        var expected = NativeCompiler.CompileAndRun(Headers + $$"""
            static char buf[512];
            static struct rtattr *add(struct nlmsghdr *n, int type, const void *data, int len) {
                struct rtattr *rta = (struct rtattr *)((char *)n + NLMSG_ALIGN(n->nlmsg_len));
                rta->rta_type = type; rta->rta_len = RTA_LENGTH(len);
                if (len) memcpy(RTA_DATA(rta), data, len);
                n->nlmsg_len = NLMSG_ALIGN(n->nlmsg_len) + RTA_ALIGN(rta->rta_len);
                return rta;
            }
            int main(void){
                struct nlmsghdr *n = (struct nlmsghdr *)buf;
                n->nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
                n->nlmsg_type = RTM_SETLINK; n->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK; n->nlmsg_seq = 0x01020304;
                add(n, IFLA_IFNAME, "{{name}}", strlen("{{name}}") + 1);
                struct rtattr *list = add(n, IFLA_VFINFO_LIST, 0, 0);
                struct rtattr *info = add(n, IFLA_VF_INFO, 0, 0);
                struct ifla_vf_mac m; memset(&m, 0, sizeof m); m.vf = {{vf}};
                unsigned char mac[6] = { {{string.Join(",", mac)}} }; memcpy(m.mac, mac, 6);
                add(n, IFLA_VF_MAC, &m, sizeof m);
                {{(vlan is int v ? $"struct ifla_vf_vlan vv = {{ .vf = {vf}, .vlan = {v}, .qos = {qos} }}; add(n, IFLA_VF_VLAN, &vv, sizeof vv);" : "")}}
                info->rta_len = (char *)n + n->nlmsg_len - (char *)info;
                list->rta_len = (char *)n + n->nlmsg_len - (char *)list;
                for (unsigned i = 0; i < n->nlmsg_len; i++) printf("%02x", (unsigned char)buf[i]);
                return 0;}
            """, "netlink_setvf").Trim();

        var actual = Convert.ToHexString(VfNetlink.BuildSetVf(name, vf, mac, vlan, qos, 0x01020304)).ToLowerInvariant();

        Assert.Equal(expected, actual);
    }

    [Fact]
    public void BadArgumentsAreRefusedBeforeAnythingIsSent()
    {
        byte[] mac = [2, 0, 0, 0, 0, 1];
        Assert.Throws<ArgumentException>(() => VfNetlink.BuildSetVf("a-name-longer-than15", 0, mac, null, 0, 1));
        Assert.Throws<ArgumentException>(() => VfNetlink.BuildSetVf("eth0", 0, mac[..5], null, 0, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => VfNetlink.BuildSetVf("eth0", 0, mac, 4096, 0, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => VfNetlink.BuildSetVf("eth0", 0, mac, 10, 8, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => VfNetlink.BuildSetVf("eth0", -1, mac, null, 0, 1));
    }

    [Fact]
    public void TheKernelParsesTheRequestAndItsRefusalIsTyped()
    {
        // Loopback has no VFs: the kernel parses the whole message and refuses the VF settings, which proves the
        // socket round trip and the error decoding without SR-IOV hardware (no change is made to lo).
        var e = Assert.Throws<VfNetlinkException>(() => VfNetlink.SetVf("lo", 0, [2, 0, 0, 0, 0, 1], 10));
        Assert.Equal("lo", e.PhysicalInterface);
        Assert.Contains("VF 0 of lo", e.Message);
        Assert.Contains("the kernel refused 'ip link set lo vf 0 mac 02:00:00:00:00:01 vlan 10'", e.Message);
        Assert.Matches(@"\(errno \d+\)", e.Message);
    }

    [Fact]
    public void TheKernelAnswersTheVfQueryAndANameItDoesNotKnowIsTyped()
    {
        // Loopback answers RTM_GETLINK with its link message, which lists no VFs: the reply was received and parsed.
        var none = Assert.Throws<VfNetlinkException>(() => VfNetlink.GetVf("lo", 0));
        Assert.Contains("lo lists no VF 0", none.Message);
        var missing = Assert.Throws<VfNetlinkException>(() => VfNetlink.GetVf("nosuchif9", 3));
        Assert.Contains("VF 3 of nosuchif9", missing.Message);
        Assert.Contains("the kernel refused 'ip link show nosuchif9'", missing.Message);
        Assert.Matches(@"\(errno \d+\)", missing.Message);
    }
}
