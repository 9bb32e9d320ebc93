using System.Management.Automation;
using KvmPS.Management.Networks;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Completers;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>
/// New-KvmNetwork: defines a virtual network in the store (Hyper-V's New-VMSwitch). Nat and Isolated networks get a
/// bridge KvmPS makes, with DHCP and DNS; Bridge networks name a host bridge that exists. It is not started unless -Start.
/// </summary>
[Cmdlet(VerbsCommon.New, "KvmNetwork", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmNetwork))]
public sealed class NewKvmNetworkCommand : KvmNetworkCmdletBase
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(NetworkNameCompleter))]
    public string Name { get; set; } = "";

    /// <summary>Nat (the default), Isolated or Bridge.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    public NetworkMode Mode { get; set; } = NetworkMode.Nat;

    /// <summary>The Linux bridge (at most 15 characters): made by KvmPS for Nat and Isolated, an existing one for Bridge.</summary>
    [Parameter(Mandatory = true, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [Alias("Bridge", "SwitchName")]
    public string BridgeName { get; set; } = "";

    /// <summary>IPv4 subnet in CIDR form (Nat, Isolated), e.g. 10.77.0.0/24.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string? Subnet { get; set; }

    /// <summary>The bridge's address in the subnet; by default its first host address.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string? Gateway { get; set; }

    [Parameter(ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string? DhcpRangeStart { get; set; }

    [Parameter(ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string? DhcpRangeEnd { get; set; }

    /// <summary>DHCP reservations: @{ MacAddress = '52:54:00:12:34:56'; IPAddress = '10.77.0.10'; HostName = 'web1' }.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [ValidateNotNull]
    [Alias("StaticLeases")]
    public object[]? StaticLease { get; set; }

    [Parameter(ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string? DnsDomain { get; set; }

    /// <summary>The bridge's MTU in bytes; the kernel's default (1500) without it.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [ValidateRange(68, 65535)]
    public int? Mtu { get; set; }

    /// <summary>kvmps autostart starts the network (before the VMs) after a host reboot.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    public SwitchParameter Autostart { get; set; }

    /// <summary>Start the network once it is defined (bridge, dnsmasq, nftables rules).</summary>
    [Parameter]
    public SwitchParameter Start { get; set; }

    protected override void ProcessLocal()
    {
        var definition = new NetworkDefinition(
            Name,
            Mode,
            BridgeName,
            Subnet,
            NetworkParameters.Address(nameof(Gateway), Gateway),
            NetworkParameters.Address(nameof(DhcpRangeStart), DhcpRangeStart),
            NetworkParameters.Address(nameof(DhcpRangeEnd), DhcpRangeEnd),
            StaticLease is null ? null : NetworkParameters.Leases(nameof(StaticLease), StaticLease),
            DnsDomain,
            Mtu,
            Autostart.IsPresent);
        var what = $"Create {Mode} network on bridge '{BridgeName}'" + (Subnet is null ? "" : $" ({Subnet})") + (Start.IsPresent ? " and start it" : "");
        if (!Output.ShouldProcess(Name, what))
            return;
        var info = Networks.Create(definition);
        if (Start.IsPresent)
            info = Networks.Start(Name);
        Output.WriteObject(new KvmNetwork(info));
    }

    /// <summary>-HostName: kvmps net create there with the same settings; the network there with HostName.</summary>
    internal override void ProcessRemote(RemoteHost remote)
    {
        var what = $"Create {Mode} network on bridge '{BridgeName}'" + (Subnet is null ? "" : $" ({Subnet})") + (Start.IsPresent ? " and start it" : "");
        if (!Output.ShouldProcess($"{Name} on host {remote.Display}", what))
            return;
        var arguments = new List<string> { "net", "create", "--json" };
        arguments.AddRange(NetworkParameters.CliOptions(this, Mode, BridgeName, Subnet, Gateway, DhcpRangeStart, DhcpRangeEnd, StaticLease, DnsDomain, Mtu));
        if (Autostart.IsPresent)
            arguments.Add("--autostart");
        if (Start.IsPresent)
            arguments.Add("--start");
        arguments.AddRange(["--", Name]);
        foreach (var network in remote.Objects(arguments, RemoteObject.Network))
            Output.WriteObject(network);
    }
}
