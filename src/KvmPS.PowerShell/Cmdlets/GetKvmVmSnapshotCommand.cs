using System.Management.Automation;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Completers;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Get-KvmVmSnapshot: the checkpoints of VMs (Hyper-V's Get-VMSnapshot); of every VM without -VMName.</summary>
[Cmdlet(VerbsCommon.Get, "KvmVmSnapshot", DefaultParameterSetName = NameSet)]
[OutputType(typeof(KvmVmSnapshot))]
public sealed class GetKvmVmSnapshotCommand : KvmRemoteCmdletBase
{
    internal const string NameSet = "VMName";
    internal const string VmSet = "Vm";

    [Parameter(ParameterSetName = NameSet, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(VmNameCompleter))]
    public string[]? VMName { get; set; }

    [Parameter(ParameterSetName = VmSet, Mandatory = true, Position = 0, ValueFromPipeline = true)]
    [ValidateNotNull]
    public KvmVm[]? Vm { get; set; }

    /// <summary>Checkpoint names or wildcards (not bound from the pipeline: a piped VM's Name is the VM's).</summary>
    [Parameter(Position = 1)]
    [ValidateNotNullOrEmpty]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(SnapshotNameCompleter))]
    public string[]? Name { get; set; }

    protected override void ProcessLocal()
    {
        var selection = VmResolver.Resolve(Manager.ListNames(), Vm is null ? VMName : null, Vm, allWhenEmpty: Vm is null);
        foreach (var missing in selection.NotFound)
            Output.WriteError(KvmErrorMapping.VmNotFound(missing, Manager.StoreRoot));
        // A plain checkpoint name is an error only when none of the VMs searched has it (gs-* base: only gs-b has it).
        var found = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        foreach (var vm in selection.Names)
            ForTarget(vm, () =>
            {
                var all = Manager.GetSnapshots(vm);
                foreach (var snapshot in SnapshotSelection.Select(this, vm, all, Name, found))
                    Output.WriteObject(SnapshotSelection.ToOutput(snapshot, all));
            });
        if (selection.Names.Count > 0)
            SnapshotSelection.ReportUnmatched(this, string.Join(", ", selection.Names), Name, found);
    }

    /// <summary>-HostName: <c>vm snapshot list --json</c> there for each selected VM; objects with HostName.</summary>
    internal override void ProcessRemote(RemoteHost remote)
    {
        if (Vm is not null)
            throw KvmParameterException.Combination("Vm", Vm, "-Vm takes VMs of this host; for a VM on -HostName give -VMName (or pipe Get-KvmVm -HostName).");
        var selection = VmResolver.Resolve(remote.ListNames(), VMName, null, allWhenEmpty: true);
        foreach (var missing in selection.NotFound)
            Output.WriteError(remote.VmNotFound(missing));
        var found = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        foreach (var vm in selection.Names)
            ForTarget(vm, () =>
            {
                foreach (var snapshot in SnapshotSelection.RemoteSnapshots(this, remote, vm, Name, found))
                    Output.WriteObject(snapshot);
            });
        if (selection.Names.Count > 0)
            SnapshotSelection.ReportUnmatched(this, string.Join(", ", selection.Names), Name, found);
    }
}
