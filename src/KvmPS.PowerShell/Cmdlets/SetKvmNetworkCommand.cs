using System.Management.Automation;
using KvmPS.Management.Networks;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Completers;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>
/// Set-KvmNetwork: changes the settings given (the others are kept). A running network is restarted to apply them.
/// When -Subnet changes and -Gateway or the DHCP range are not given, they return to their defaults in the new subnet.
/// </summary>
[Cmdlet(VerbsCommon.Set, "KvmNetwork", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmNetwork))]
public sealed class SetKvmNetworkCommand : KvmNetworkCmdletBase
{
    // Only the name comes from the pipeline: a piped network's own settings (its old gateway) must not be re-applied
    // over the ones typed here.
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(NetworkNameCompleter))]
    [Alias("Network")]
    public string[] Name { get; set; } = [];

    [Parameter]
    public NetworkMode Mode { get; set; }

    [Parameter]
    [ValidateNotNullOrEmpty]
    [Alias("Bridge", "SwitchName")]
    public string? BridgeName { get; set; }

    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Subnet { get; set; }

    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Gateway { get; set; }

    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? DhcpRangeStart { get; set; }

    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? DhcpRangeEnd { get; set; }

    /// <summary>Replaces every reservation; <c>@()</c> removes them all.</summary>
    [Parameter]
    [AllowEmptyCollection]
    [ValidateNotNull]
    [Alias("StaticLeases")]
    public object[]? StaticLease { get; set; }

    /// <summary>An empty string removes the DNS domain.</summary>
    [Parameter]
    [AllowEmptyString]
    public string? DnsDomain { get; set; }

    [Parameter]
    [ValidateRange(68, 65535)]
    public int Mtu { get; set; }

    /// <summary><c>-Autostart</c> or <c>-Autostart:$false</c>.</summary>
    [Parameter]
    public SwitchParameter Autostart { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void Begin()
    {
        // Checked once, before any network: a bad value is the caller's, not one network's.
        NetworkParameters.Address(nameof(Gateway), Gateway);
        NetworkParameters.Address(nameof(DhcpRangeStart), DhcpRangeStart);
        NetworkParameters.Address(nameof(DhcpRangeEnd), DhcpRangeEnd);
        if (StaticLease is not null)
            NetworkParameters.Leases(nameof(StaticLease), StaticLease);
    }

    protected override void ProcessLocal()
    {
        foreach (var name in Name)
            ForTarget(name, () =>
            {
                var current = Networks.Get(name);
                var target = Apply(current.Definition);
                var changes = NetworkParameters.Differences(current.Definition, target);
                if (changes.Count == 0)
                {
                    Output.WriteVerbose($"Network '{name}' already has these settings.");
                }
                else
                {
                    var restart = current.State == NetworkState.Inactive ? "" : " (the network is restarted to apply them)";
                    if (!Output.ShouldProcess(name, $"Change network settings ({string.Join(", ", changes)}){restart}"))
                        return;
                    current = Networks.Set(target);
                }
                if (PassThru.IsPresent)
                    Output.WriteObject(new KvmNetwork(current));
            });
    }

    /// <summary>The definition with the given parameters over <paramref name="d"/>.</summary>
    private NetworkDefinition Apply(NetworkDefinition d)
    {
        var result = d;
        if (Bound(nameof(Mode)))
            result = result with { Mode = Mode };
        if (BridgeName is not null)
            result = result with { BridgeName = BridgeName };
        if (Subnet is not null && Subnet != d.Subnet)
            // Addresses of the old subnet would not fit the new one: not given, they go back to the defaults.
            result = result with { Subnet = Subnet, Gateway = null, DhcpRangeStart = null, DhcpRangeEnd = null };
        if (Gateway is not null)
            result = result with { Gateway = NetworkParameters.Address(nameof(Gateway), Gateway) };
        if (DhcpRangeStart is not null)
            result = result with { DhcpRangeStart = NetworkParameters.Address(nameof(DhcpRangeStart), DhcpRangeStart) };
        if (DhcpRangeEnd is not null)
            result = result with { DhcpRangeEnd = NetworkParameters.Address(nameof(DhcpRangeEnd), DhcpRangeEnd) };
        if (StaticLease is not null)
            result = result with { StaticLeases = NetworkParameters.Leases(nameof(StaticLease), StaticLease) };
        if (Bound(nameof(DnsDomain)))
            result = result with { DnsDomain = string.IsNullOrEmpty(DnsDomain) ? null : DnsDomain };
        if (Bound(nameof(Mtu)))
            result = result with { MtuBytes = Mtu };
        if (Bound(nameof(Autostart)))
            result = result with { Autostart = Autostart.IsPresent };
        return result;
    }

    /// <summary>-HostName: kvmps net set there with the settings given (the others stay as they are there).</summary>
    internal override void ProcessRemote(RemoteHost remote)
    {
        var options = NetworkParameters.CliOptions(this, Bound(nameof(Mode)) ? Mode : null, BridgeName, Subnet, Gateway, DhcpRangeStart, DhcpRangeEnd, StaticLease, DnsDomain, Bound(nameof(Mtu)) ? Mtu : null);
        if (Bound(nameof(Autostart)))
            options.Add(Autostart.IsPresent ? "--autostart" : "--no-autostart");
        ForEachRemote(remote, Name, n => n, $"Change network settings ({string.Join(" ", options)})", n => ["net", "set", "--json", .. options, "--", n], RemoteObject.Network, PassThru.IsPresent);
    }
}
