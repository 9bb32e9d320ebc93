using System.Management.Automation;
using KvmPS.Management.Snapshots;
using KvmPS.PowerShell.Completers;

namespace KvmPS.PowerShell.Internal;

/// <summary>
/// Base of the cmdlets that act on existing checkpoints (Restore-KvmVmSnapshot, Remove-KvmVmSnapshot): Hyper-V's
/// <c>-VMName</c> + <c>-Name</c> (wildcards, by property name from the pipeline) or <c>-VMSnapshot</c> objects. A plain
/// VM or checkpoint name that matches nothing is an error (VmNotFound, SnapshotNotFound); one failure does not stop the rest.
/// </summary>
public abstract class KvmSnapshotCmdletBase : KvmCmdletBase
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

    protected override void Process()
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
        if (patterns is null || patterns.Length == 0)
            return snapshots;
        var selected = new List<VmSnapshot>();
        foreach (var pattern in patterns)
        {
            var hasWildcards = WildcardPattern.ContainsWildcardCharacters(pattern);
            var matcher = WildcardPattern.Get(pattern, WildcardOptions.IgnoreCase);
            var matches = snapshots.Where(s => hasWildcards ? matcher.IsMatch(s.Name) : string.Equals(s.Name, pattern, StringComparison.OrdinalIgnoreCase)).ToList();
            if (!hasWildcards && matchedPlainNames is not null)
            {
                if (matches.Count > 0) matchedPlainNames.Add(pattern);
            }
            else if (matches.Count == 0 && !hasWildcards)
                cmdlet.Output.WriteError(cmdlet.ErrorFor(new SnapshotNotFoundException(vmName, pattern), pattern));
            selected.AddRange(matches.Where(m => !selected.Contains(m)));
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

    public static KvmVmSnapshot ToOutput(VmSnapshot snapshot, IReadOnlyList<VmSnapshot> all) =>
        new(snapshot, all.FirstOrDefault(s => s.Id == snapshot.ParentId)?.Name);
}
