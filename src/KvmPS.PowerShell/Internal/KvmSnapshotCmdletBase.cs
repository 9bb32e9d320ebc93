using System.Management.Automation;
using KvmPS.Management.Snapshots;
using KvmPS.PowerShell.Completers;

namespace KvmPS.PowerShell.Internal;

/// <summary>
/// Base of the cmdlets that act on existing checkpoints (Restore-KvmVmSnapshot, Remove-KvmVmSnapshot): Hyper-V's
/// <c>-VMName</c> + <c>-Name</c> (wildcards, by property name from the pipeline) or <c>-VMSnapshot</c> objects. A plain
/// VM or checkpoint name that matches nothing is an error (VmNotFound, SnapshotNotFound); one failure does not stop the rest.
/// </summary>
public abstract class KvmSnapshotCmdletBase : KvmRemoteCmdletBase
{
    internal const string NameSet = "Name";
    internal const string SnapshotSet = "Snapshot";

    [Parameter(ParameterSetName = NameSet, Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(VmNameCompleter))]
    public string[]? VMName { get; set; }

    [Parameter(ParameterSetName = NameSet, Mandatory = true, Position = 1, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(SnapshotNameCompleter))]
    public string[]? Name { get; set; }

    [Parameter(ParameterSetName = SnapshotSet, Mandatory = true, Position = 0, ValueFromPipeline = true)]
    [ValidateNotNull]
    public KvmVmSnapshot[]? VMSnapshot { get; set; }

    protected override void ProcessLocal()
    {
        if (VMSnapshot is not null)
        {
            foreach (var piped in VMSnapshot.Where(s => s is not null))
                ForTarget(piped, () => ProcessSnapshot(Manager.GetSnapshot(piped.VMName, piped.Name)));
            return;
        }
        var selection = VmResolver.Resolve(Manager.ListNames(), VMName, null);
        foreach (var missing in selection.NotFound)
            Output.WriteError(KvmErrorMapping.VmNotFound(missing, Manager.StoreRoot));
        foreach (var vm in selection.Names)
            ForTarget(vm, () =>
            {
                foreach (var snapshot in SnapshotSelection.Select(this, vm, Manager.GetSnapshots(vm), Name))
                    ForTarget(snapshot.Name, () => ProcessSnapshot(snapshot));
            });
    }

    /// <summary>Acts on one checkpoint (exceptions become errors targeting its name).</summary>
    protected abstract void ProcessSnapshot(VmSnapshot snapshot);

    /// <summary>
    /// -HostName: the VMs there (<c>vm list</c>) and their checkpoints (<c>vm snapshot list</c>), matched as here; each
    /// match goes to <see cref="ProcessRemoteSnapshot"/>. -VMSnapshot takes this host's checkpoints only.
    /// </summary>
    internal override void ProcessRemote(RemoteHost remote)
    {
        if (VMSnapshot is not null)
            throw KvmParameterException.Combination("VMSnapshot", VMSnapshot, "-VMSnapshot takes checkpoints of this host; for a VM on -HostName give -VMName and -Name (or pipe Get-KvmVmSnapshot -HostName).");
        foreach (var vm in remote.SelectVms(Output, VMName))
            ForTarget(vm, () =>
            {
                foreach (var snapshot in SnapshotSelection.RemoteSnapshots(this, remote, vm, Name))
                    ForTarget(snapshot.Properties["Name"].Value, () => ProcessRemoteSnapshot(remote, vm, snapshot));
            });
    }

    /// <summary>Acts on one checkpoint of <paramref name="vm"/> on <paramref name="remote"/> (as <c>vm snapshot list</c> there described it).</summary>
    internal abstract void ProcessRemoteSnapshot(RemoteHost remote, string vm, PSObject snapshot);

    /// <summary>The checkpoint as output, with its parent's name.</summary>
    internal KvmVmSnapshot ToOutput(VmSnapshot snapshot, IReadOnlyList<VmSnapshot>? all = null) => SnapshotSelection.ToOutput(snapshot, all ?? Manager.GetSnapshots(snapshot.VmName));
}

/// <summary>Matching checkpoint names (wildcards, case-insensitive as Hyper-V) and reporting plain names that match none.</summary>
internal static class SnapshotSelection
{
    /// <param name="matchedPlainNames">
    /// When several VMs are searched (Get-KvmVmSnapshot over a wildcard or every VM), the caller collects the plain
    /// names found here and reports those found in none (<see cref="ReportUnmatched"/>); null reports per VM.
    /// </param>
    public static IReadOnlyList<VmSnapshot> Select(KvmCmdletBase cmdlet, string vmName, IReadOnlyList<VmSnapshot> snapshots, string[]? patterns,
        ISet<string>? matchedPlainNames = null)
    {
        var names = SelectNames(cmdlet, vmName, snapshots.Select(s => s.Name).ToList(), patterns, matchedPlainNames);
        return snapshots.Where(s => names.Contains(s.Name)).ToList();
    }

    private static HashSet<string> SelectNames(KvmCmdletBase cmdlet, string vmName, IReadOnlyList<string> snapshots, string[]? patterns, ISet<string>? matchedPlainNames)
    {
        if (patterns is null || patterns.Length == 0)
            return snapshots.ToHashSet(StringComparer.Ordinal);
        var selected = new HashSet<string>(StringComparer.Ordinal);
        foreach (var pattern in patterns)
        {
            var hasWildcards = WildcardPattern.ContainsWildcardCharacters(pattern);
            var matcher = WildcardPattern.Get(pattern, WildcardOptions.IgnoreCase);
            var matches = snapshots.Where(s => hasWildcards ? matcher.IsMatch(s) : string.Equals(s, pattern, StringComparison.OrdinalIgnoreCase)).ToList();
            if (!hasWildcards && matchedPlainNames is not null)
            {
                if (matches.Count > 0) matchedPlainNames.Add(pattern);
            }
            else if (matches.Count == 0 && !hasWildcards)
                cmdlet.Output.WriteError(cmdlet.ErrorFor(new SnapshotNotFoundException(vmName, pattern), pattern));
            selected.UnionWith(matches);
        }
        return selected;
    }

    /// <summary>Reports each plain name in <paramref name="patterns"/> that no searched VM has.</summary>
    public static void ReportUnmatched(KvmCmdletBase cmdlet, string vmDisplay, string[]? patterns, ISet<string> matchedPlainNames)
    {
        foreach (var pattern in patterns ?? [])
            if (!WildcardPattern.ContainsWildcardCharacters(pattern) && !matchedPlainNames.Contains(pattern))
                cmdlet.Output.WriteError(cmdlet.ErrorFor(new SnapshotNotFoundException(vmDisplay, pattern), pattern));
    }

    /// <summary>
    /// The checkpoints of <paramref name="vmName"/> on <paramref name="remote"/> (<c>vm snapshot list --json</c> there) that
    /// <paramref name="patterns"/> select, by the same rules as <see cref="Select"/>.
    /// </summary>
    public static IReadOnlyList<PSObject> RemoteSnapshots(KvmCmdletBase cmdlet, RemoteHost remote, string vmName, string[]? patterns, ISet<string>? matchedPlainNames = null)
    {
        var all = remote.Objects(["vm", "snapshot", "list", "--json", "--", vmName], RemoteObject.Snapshot);
        // The local selection needs VmSnapshot objects; matching by name only is the same rule over the remote list.
        var names = all.Select(o => (string)o.Properties["Name"].Value).ToList();
        var selected = SelectNames(cmdlet, vmName, names, patterns, matchedPlainNames);
        return all.Where(o => selected.Contains((string)o.Properties["Name"].Value)).ToList();
    }

    public static KvmVmSnapshot ToOutput(VmSnapshot snapshot, IReadOnlyList<VmSnapshot> all) =>
        new(snapshot, all.FirstOrDefault(s => s.Id == snapshot.ParentId)?.Name);
}
