using System.Net;
using KvmPS.Management.DesiredState;
using KvmPS.Management.Networks;

namespace KvmPS.Management.Tests.DesiredState;

/// <summary>The manifests' Networks section: what it reads, and every refusal naming file, line, key path and value.</summary>
public sealed class NetworkManifestReaderTests
{
    private const string Lab = """
        @{
          Networks = @(
            @{ Name = 'lab'; Mode = 'Nat'; Bridge = 'kvbr-lab'; Subnet = '10.77.0.0/24'; Gateway = '10.77.0.1'
               DhcpRange = @('10.77.0.100', '10.77.0.200')
               StaticLeases = @( @{ Mac = '52:54:00:12:34:56'; Address = '10.77.0.10'; HostName = 'web1' } )
               DnsDomain = 'lab.test'; Mtu = 9000; Autostart = $true; Ensure = 'Present' }
            @{ Name = 'lan'; Mode = 'Bridge'; Bridge = 'br0' }
            @{ Name = 'old'; Ensure = 'Absent' }
          )
        }
        """;

    [Fact]
    public void A_networks_only_manifest_reads_every_setting()
    {
        var desired = DesiredStateReader.Parse(Lab, "m.psd1");

        Assert.Empty(desired.Vms);
        Assert.Equal(["lab", "lan", "old"], desired.Networks.Select(n => n.Name));
        var lab = desired.Networks[0];
        Assert.Equal((NetworkMode.Nat, "kvbr-lab", "10.77.0.0/24"), (lab.Mode, lab.Bridge, lab.Subnet));
        Assert.Equal(IPAddress.Parse("10.77.0.1"), lab.Gateway);
        Assert.Equal((IPAddress.Parse("10.77.0.100"), IPAddress.Parse("10.77.0.200")), (lab.DhcpRangeStart, lab.DhcpRangeEnd));
        var lease = Assert.Single(lab.StaticLeases!);
        Assert.Equal(("52:54:00:12:34:56", "10.77.0.10", "web1"), (lease.MacAddress.ToString(), lease.Address.ToString(), lease.HostName));
        Assert.Equal(("lab.test", 9000, true), (lab.DnsDomain, lab.Mtu, lab.Autostart));

        var lan = desired.Networks[1];
        Assert.Equal((NetworkMode.Bridge, "br0", (bool?)null), (lan.Mode, lan.Bridge, lan.Autostart));
        Assert.Equal(VmEnsure.Absent, desired.Networks[2].Ensure);

        var definition = lab.ToDefinition();
        Assert.Equal(("lab", "kvbr-lab", 9000, true), (definition.Name, definition.BridgeName, definition.MtuBytes, definition.Autostart));
    }

    [Fact]
    public void Mode_defaults_to_Nat_and_unstated_settings_stay_unmanaged()
    {
        var desired = DesiredStateReader.Parse("@{ Networks = @{ Name = 'n'; Bridge = 'kvbr-n'; Subnet = '192.168.50.0/24' } }", "m.psd1");

        var n = Assert.Single(desired.Networks);
        Assert.Equal(NetworkMode.Nat, n.Mode);
        Assert.Null(n.Gateway);
        Assert.Null(n.StaticLeases);
        Assert.Null(n.Autostart);
    }

    [Fact]
    public void Networks_from_several_files_merge_and_a_name_is_declared_once()
    {
        using var temp = new TestSupport.TempDirectory();
        var a = Path.Combine(temp.Path, "a.psd1");
        var b = Path.Combine(temp.Path, "b.psd1");
        File.WriteAllText(a, "@{ Networks = @( @{ Name = 'one'; Bridge = 'kvbr-1'; Subnet = '10.1.0.0/24' } ) }");
        File.WriteAllText(b, "@{ Networks = @( @{ Name = 'two'; Bridge = 'kvbr-2'; Subnet = '10.2.0.0/24' } ) }");
        Assert.Equal(["one", "two"], DesiredStateReader.ReadFiles([a, b]).Networks.Select(n => n.Name));

        File.WriteAllText(b, "@{ Networks = @( @{ Name = 'one'; Bridge = 'kvbr-2'; Subnet = '10.2.0.0/24' } ) }");
        var error = Assert.Throws<DesiredStateException>(() => DesiredStateReader.ReadFiles([a, b]));
        Assert.Contains("declared twice", error.Message);
        Assert.StartsWith(b, error.Message);
    }

    [Theory]
    [InlineData("@{ Name = 'n'; Bridge = 'b'; Subnet = '10.0.0.0/24'; Subnett = 'x' }", "Networks[0].Subnett", "unknown key 'Subnett'")]
    [InlineData("@{ Bridge = 'b'; Subnet = '10.0.0.0/24' }", "Networks[0].Name", "is required")]
    [InlineData("@{ Name = 'a b'; Bridge = 'b'; Subnet = '10.0.0.0/24' }", "Networks[0].Name", "'a b' is not a valid network name")]
    [InlineData("@{ Name = 'n'; Subnet = '10.0.0.0/24' }", "Networks[0].Bridge", "is required for network 'n'")]
    [InlineData("@{ Name = 'n'; Bridge = 'much-too-long-bridge'; Subnet = '10.0.0.0/24' }", "Networks[0].Bridge", "'much-too-long-bridge' is not a valid interface name")]
    [InlineData("@{ Name = 'n'; Mode = 'Routed'; Bridge = 'b'; Subnet = '10.0.0.0/24' }", "Networks[0].Mode", "'Routed' is not one of")]
    [InlineData("@{ Name = 'n'; Bridge = 'b' }", "Networks[0].Subnet", "is required for a Nat network")]
    [InlineData("@{ Name = 'n'; Bridge = 'b'; Subnet = '10.0.0.5/24' }", "Networks[0].Subnet", "'10.0.0.5/24' is not an IPv4 subnet")]
    [InlineData("@{ Name = 'n'; Bridge = 'b'; Subnet = '10.0.0.0/33' }", "Networks[0].Subnet", "'10.0.0.0/33'")]
    [InlineData("@{ Name = 'n'; Bridge = 'b'; Subnet = 'fd00::/64' }", "Networks[0].Subnet", "'fd00::/64'")]
    [InlineData("@{ Name = 'n'; Bridge = 'b'; Subnet = '10.0.0.0/24'; Gateway = '10.0.1.1' }", "Networks[0].Gateway", "10.0.1.1 is not a host address of the subnet 10.0.0.0/24")]
    [InlineData("@{ Name = 'n'; Bridge = 'b'; Subnet = '10.0.0.0/24'; Gateway = '10.0.0.255' }", "Networks[0].Gateway", "10.0.0.255 is not a host address")]
    [InlineData("@{ Name = 'n'; Bridge = 'b'; Subnet = '10.0.0.0/24'; Gateway = 'gw' }", "Networks[0].Gateway", "the string 'gw'")]
    [InlineData("@{ Name = 'n'; Bridge = 'b'; Subnet = '10.0.0.0/24'; DhcpRange = @('10.0.0.9') }", "Networks[0].DhcpRange", "must be two addresses")]
    [InlineData("@{ Name = 'n'; Bridge = 'b'; Subnet = '10.0.0.0/24'; DhcpRange = @('10.0.0.9', '10.0.9.9') }", "Networks[0].DhcpRange[1]", "10.0.9.9 is not a host address")]
    [InlineData("@{ Name = 'n'; Bridge = 'b'; Subnet = '10.0.0.0/24'; DhcpRange = @('10.0.0.90', '10.0.0.9') }", "Networks[0].DhcpRange", "starts at 10.0.0.90, after its end 10.0.0.9")]
    [InlineData("@{ Name = 'n'; Bridge = 'b'; Subnet = '10.0.0.0/24'; StaticLeases = @( @{ Mac = 'zz'; Address = '10.0.0.5' } ) }", "Networks[0].StaticLeases[0].Mac", "zz")]
    [InlineData("@{ Name = 'n'; Bridge = 'b'; Subnet = '10.0.0.0/24'; StaticLeases = @( @{ Mac = '52:54:00:00:00:01'; Address = '10.9.0.5' } ) }", "Networks[0].StaticLeases[0].Address", "10.9.0.5")]
    [InlineData("@{ Name = 'n'; Bridge = 'b'; Subnet = '10.0.0.0/24'; StaticLeases = @( @{ Mac = '52:54:00:00:00:01' } ) }", "Networks[0].StaticLeases[0].Address", "is required")]
    [InlineData("@{ Name = 'n'; Bridge = 'b'; Subnet = '10.0.0.0/24'; StaticLeases = @( @{ Mac = '52:54:00:00:00:01'; Address = '10.0.0.5'; Ip = 'x' } ) }", "Networks[0].StaticLeases[0].Ip", "unknown key 'Ip'")]
    [InlineData("@{ Name = 'n'; Bridge = 'b'; Subnet = '10.0.0.0/24'; StaticLeases = @( @{ Mac = '52:54:00:00:00:01'; Address = '10.0.0.5' }, @{ Mac = '52:54:00:00:00:02'; Address = '10.0.0.5' } ) }", "Networks[0].StaticLeases[1].Address", "is leased to 52:54:00:00:00:01 already")]
    [InlineData("@{ Name = 'n'; Bridge = 'b'; Subnet = '10.0.0.0/24'; Mtu = 20 }", "Networks[0].Mtu", "the number 20")]
    [InlineData("@{ Name = 'n'; Bridge = 'b'; Subnet = '10.0.0.0/24'; Autostart = 'yes' }", "Networks[0].Autostart", "$true or $false")]
    [InlineData("@{ Name = 'n'; Bridge = 'b'; Subnet = '10.0.0.0/24'; Ensure = 'Gone' }", "Networks[0].Ensure", "'Gone' is not one of")]
    [InlineData("@{ Name = 'n'; Mode = 'Bridge'; Bridge = 'br0'; Subnet = '10.0.0.0/24' }", "Networks[0].Subnet", "has no meaning for a Bridge network")]
    [InlineData("@( @{ Name = 'n'; Bridge = 'b'; Subnet = '10.0.0.0/24' }, @{ Name = 'n'; Bridge = 'c'; Subnet = '10.1.0.0/24' } )", "Networks[1].Name", "declared twice")]
    [InlineData("@( @{ Name = 'n'; Bridge = 'b'; Subnet = '10.0.0.0/24' }, @{ Name = 'm'; Bridge = 'b'; Subnet = '10.1.0.0/24' } )", "Networks[1].Bridge", "also the bridge of network 'n'")]
    [InlineData("'lab'", "Networks", "must be a list of hashtables")]
    public void A_bad_network_entry_is_refused_naming_the_file_line_key_and_value(string entries, string property, string expected)
    {
        var text = "@{\n  Networks = " + entries + "\n}";

        var error = Assert.Throws<DesiredStateException>(() => DesiredStateReader.Parse(text, "net.psd1"));

        Assert.Equal(property, error.Property);
        Assert.Contains(expected, error.Message);
        Assert.Equal("net.psd1", error.File);
        Assert.True(error.Line >= 2, $"line {error.Line} should point into the Networks section");
        Assert.StartsWith($"net.psd1:{error.Line}:", error.Message);
    }

    [Fact]
    public void An_unknown_top_level_key_lists_Networks_among_the_allowed_ones()
    {
        var error = Assert.Throws<DesiredStateException>(() => DesiredStateReader.Parse("@{ Network = @() }", "m.psd1"));
        Assert.Contains("Networks", error.Message);
    }

    // The VMs' adapters say Network = 'lab': the definitions reader's Network key comes with lane net-core's merge.
    [Fact]
    public void The_example_manifest_declares_a_network_a_pool_and_VMs_on_both()
    {
        var root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "KvmPS.sln")))
            root = Path.GetDirectoryName(root)!;

        var desired = DesiredStateReader.ReadFiles([Path.Combine(root, "examples", "network-host.psd1")]);

        var lab = Assert.Single(desired.Networks);
        Assert.Equal((NetworkMode.Nat, "kvbr-lab"), (lab.Mode, lab.Bridge));
        Assert.Equal("lab", Assert.Single(desired.StoragePools).Name);
        Assert.All(desired.Vms, vm =>
        {
            Assert.Equal("lab", Assert.Single(vm.Definition!.NetworkAdapters).NetworkName);
            Assert.Equal("lab", Assert.Single(vm.Definition.Disks).Pool);
        });
    }
}
