using KvmPS.Management.Networks;

namespace KvmPS.Management.DesiredState;

/// <summary>
/// Drift and steps for a manifest's <c>Networks</c>. Pure, like <see cref="StoragePoolPlanner"/>: networks to create,
/// change and start (or repair) are planned before every VM step, so the VMs find their network up; networks to remove
/// after them, once the VMs that used them are gone. Drift names the network as <c>Networks.&lt;name&gt;</c> with the
/// property (Ensure, Mode, BridgeName, Subnet, Gateway, DhcpRangeStart, DhcpRangeEnd, StaticLeases, DnsDomain, Mtu,
/// Autostart, State).
/// </summary>
public static class NetworkPlanner
{
    /// <summary>The drift prefix of network entries ("Networks.lab").</summary>
    public static string Subject(string network) => "Networks." + network;

    /// <param name="actual">The networks there are now, by name, with their state.</param>
    /// <param name="removedVms">The VMs the manifest removes (Ensure = 'Absent'): they no longer hold a network.</param>
    /// <returns>Steps before the VMs', steps after the VMs', the drift, and warnings.</returns>
    public static (List<ReconcileAction> Before, List<ReconcileAction> After, List<Drift> Drifts, List<string> Warnings) Plan(
        IReadOnlyList<DesiredNetwork> desired, IReadOnlyDictionary<string, NetworkInfo> actual, IReadOnlySet<string>? removedVms = null)
    {
        var before = new List<ReconcileAction>();
        var after = new List<ReconcileAction>();
        var drifts = new List<Drift>();
        var warnings = new List<string>();
        var none = Array.Empty<Drift>();
        foreach (var network in desired)
        {
            var name = network.Name;
            var subject = Subject(name);
            actual.TryGetValue(name, out var current);
            if (network.Ensure == VmEnsure.Absent)
            {
                if (current is null)
                    continue;
                drifts.Add(new Drift(subject, "Ensure", "Absent", "Present"));
                after.Add(new ReconcileAction(ReconcileActionKind.RemoveNetwork, name, $"Remove network '{name}'", "Ensure is 'Absent'", none));
                var users = current.UsedBy.Where(vm => removedVms is null || !removedVms.Contains(vm)).ToList();
                if (users.Count > 0)
                    warnings.Add($"Network '{name}' is to be removed, but VM(s) {string.Join(", ", users.Select(u => $"'{u}'"))} still have adapters on it: the removal will be refused (remove the adapters or the VMs in the manifest)");
                continue;
            }
            if (current is null)
            {
                var drift = new Drift(subject, "Ensure", "Present", "Absent");
                drifts.Add(drift);
                var definition = network.ToDefinition();
                before.Add(new ReconcileAction(ReconcileActionKind.CreateNetwork, name,
                    $"Create {definition.Mode} network '{name}' on bridge '{definition.BridgeName}'" + (definition.Subnet is null ? "" : $" ({definition.Subnet})"), "it does not exist", [drift]));
                before.Add(new ReconcileAction(ReconcileActionKind.StartNetwork, name, $"Start network '{name}'", "it is created Inactive; the VMs on it need it Active", none));
                continue;
            }
            var target = TargetDefinition(network, current.Definition);
            var changes = Differences(subject, current.Definition, target);
            drifts.AddRange(changes);
            if (changes.Count > 0)
                before.Add(new ReconcileAction(ReconcileActionKind.UpdateNetwork, name,
                    $"Update network '{name}' ({string.Join(", ", changes.Select(c => $"{c.Property} {c.Actual ?? "(default)"} -> {c.Expected ?? "(default)"}"))})",
                    current.State == NetworkState.Inactive ? "the stored network differs" : "the stored network differs; it is restarted to apply it", changes));
            if (current.State != NetworkState.Active)
            {
                var actualState = current.State == NetworkState.Degraded && current.Problems.Count > 0
                    ? $"Degraded ({string.Join("; ", current.Problems)})"
                    : current.State.ToString();
                var drift = new Drift(subject, "State", nameof(NetworkState.Active), actualState);
                drifts.Add(drift);
                before.Add(new ReconcileAction(ReconcileActionKind.StartNetwork, name,
                    current.State == NetworkState.Degraded ? $"Repair network '{name}' (start what is missing)" : $"Start network '{name}'",
                    current.State == NetworkState.Degraded ? $"it is {actualState}" : "it is Inactive", [drift]));
            }
        }
        return (before, after, drifts, warnings);
    }

    /// <summary>
    /// The definition the network should have: its current one with the manifest's stated settings. When the subnet
    /// changes, unstated addresses of the old subnet (gateway, DHCP range) go back to the defaults of the new one.
    /// </summary>
    public static NetworkDefinition TargetDefinition(DesiredNetwork network, NetworkDefinition current)
    {
        var target = current with { Mode = network.Mode, BridgeName = network.Bridge ?? current.BridgeName };
        if (network.Mode == NetworkMode.Bridge)
            // A Bridge network has no services: nothing of a former Nat or Isolated network's addressing applies.
            target = target with { Subnet = null, Gateway = null, DhcpRangeStart = null, DhcpRangeEnd = null, StaticLeases = null, DnsDomain = null, MtuBytes = null };
        else if (network.Subnet is not null && network.Subnet != current.Subnet)
            target = target with { Subnet = network.Subnet, Gateway = null, DhcpRangeStart = null, DhcpRangeEnd = null };
        return target with
        {
            Gateway = network.Gateway ?? target.Gateway,
            DhcpRangeStart = network.DhcpRangeStart ?? target.DhcpRangeStart,
            DhcpRangeEnd = network.DhcpRangeEnd ?? target.DhcpRangeEnd,
            StaticLeases = network.StaticLeases ?? target.StaticLeases,
            DnsDomain = network.DnsDomain ?? target.DnsDomain,
            MtuBytes = network.Mtu ?? target.MtuBytes,
            Autostart = network.Autostart ?? target.Autostart,
        };
    }

    /// <summary>One drift per setting that differs (values as text; null: the manager's default).</summary>
    public static List<Drift> Differences(string subject, NetworkDefinition actual, NetworkDefinition expected)
    {
        var drifts = new List<Drift>();
        void Compare(string property, string? want, string? have)
        {
            if (!string.Equals(want, have, StringComparison.Ordinal))
                drifts.Add(new Drift(subject, property, want, have));
        }
        Compare("Mode", expected.Mode.ToString(), actual.Mode.ToString());
        Compare("BridgeName", expected.BridgeName, actual.BridgeName);
        Compare("Subnet", expected.Subnet, actual.Subnet);
        Compare("Gateway", expected.Gateway?.ToString(), actual.Gateway?.ToString());
        Compare("DhcpRangeStart", expected.DhcpRangeStart?.ToString(), actual.DhcpRangeStart?.ToString());
        Compare("DhcpRangeEnd", expected.DhcpRangeEnd?.ToString(), actual.DhcpRangeEnd?.ToString());
        Compare("StaticLeases", LeasesText(expected.StaticLeases), LeasesText(actual.StaticLeases));
        Compare("DnsDomain", expected.DnsDomain, actual.DnsDomain);
        Compare("Mtu", expected.MtuBytes?.ToString(System.Globalization.CultureInfo.InvariantCulture), actual.MtuBytes?.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Compare("Autostart", expected.Autostart.ToString(), actual.Autostart.ToString());
        return drifts;
    }

    /// <summary>Leases in MAC order, so the order they are listed in is not drift; null for none.</summary>
    private static string? LeasesText(IReadOnlyList<DhcpStaticLease>? leases) =>
        leases is null || leases.Count == 0
            ? null
            : string.Join(", ", leases.OrderBy(l => l.MacAddress.ToString(), StringComparer.Ordinal)
                .Select(l => $"{l.MacAddress}={l.Address}" + (l.HostName is null ? "" : $" ({l.HostName})")));
}
