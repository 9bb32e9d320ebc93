using System.Management.Automation;
using KvmPS.Management.Lifecycle;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Completers;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>
/// Update-KvmVmm: local live upgrade. Moves each running VM into a new kvmps-vmm process started from the binary on disk
/// while its guest keeps running (VmManager.Upgrade, docs/migration.md). Without -Name or -Vm: every running VM.
/// A VM whose upgrade fails runs on in its old VMM (an error names why); the others go on. With -HostName: on that host
/// (kvmps vm upgrade there).
/// </summary>
[Cmdlet(VerbsData.Update, "KvmVmm", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmVm), typeof(KvmRemoteVm))]
public sealed class UpdateKvmVmmCommand : KvmRemoteCmdletBase
{
    private const string NameSet = "Name";
    private const string VmSet = "Vm";

    /// <summary>The VMs (wildcards); omitted: every running VM.</summary>
    [Parameter(ParameterSetName = NameSet, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(VmNameCompleter))]
    [Alias("VMName")]
    public string[]? Name { get; set; }

    [Parameter(ParameterSetName = VmSet, Mandatory = true, Position = 0, ValueFromPipeline = true)]
    [ValidateNotNull]
    public KvmVm[]? Vm { get; set; }

    /// <summary>How long one VM's hand-over may take before it is cancelled (the VM then stays in its old VMM).</summary>
    [Parameter]
    [ValidateRange(1, 3600)]
    public int TimeoutSec { get; set; } = (int)VmManager.DefaultUpgradeTimeout.TotalSeconds;

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessLocal()
    {
        var all = Vm is null && (Name is null || Name.Length == 0);
        var selection = VmResolver.Resolve(Manager.ListNames(), Vm is null ? Name : null, Vm, allWhenEmpty: all);
        foreach (var missing in selection.NotFound)
            Output.WriteError(KvmErrorMapping.VmNotFound(missing, Manager.StoreRoot));
        foreach (var name in selection.Names)
        {
            object target = Vm?.FirstOrDefault(v => v is not null && v.Name == name) ?? (object)name;
            ForTarget(target, () =>
            {
                // "All running VMs": the ones not running are not asked for, so they are skipped quietly.
                if (all && Manager.TryGet(name) is not { State: VmState.Running })
                    return;
                if (!Output.ShouldProcess(name, "Upgrade the VMM (live: the VM moves into a new kvmps-vmm process)"))
                    return;
                var result = Manager.Upgrade(name, TimeSpan.FromSeconds(TimeoutSec));
                Output.WriteVerbose($"VM '{name}': kvmps-vmm pid {result.OldPid} -> {result.NewPid} ({result.BinaryPath}), " +
                    $"{(result.MemoryShared ? "memory passed as memfds" : "memory copied")}, total {result.Total.TotalMilliseconds:0} ms" +
                    (result.Downtime is { } d ? $", downtime {d.TotalMilliseconds:0} ms" : ""));
                if (PassThru.IsPresent)
                    Output.WriteObject(new KvmVm(result.Vm));
            });
        }
    }

    /// <summary>-HostName: kvmps vm upgrade there, for the named VMs (wildcards resolved there) or every running one.</summary>
    internal override void ProcessRemote(RemoteHost remote)
    {
        if (Vm is not null)
            throw KvmParameterException.Combination("Vm", Vm, "-Vm takes VMs of this host; for VMs on -HostName give -Name.");
        List<string>? names = null;
        if (Name is { Length: > 0 })
        {
            var selection = VmResolver.Resolve(remote.ListNames(), Name, null);
            foreach (var missing in selection.NotFound)
                Output.WriteError(remote.VmNotFound(missing));
            names = selection.Names.Where(n => Output.ShouldProcess($"{n} on host {remote.Display}", "Upgrade the VMM (live: the VM moves into a new kvmps-vmm process)")).ToList();
            if (names.Count == 0)
                return;
        }
        else if (!Output.ShouldProcess($"every running VM on host {remote.Display}", "Upgrade the VMM (live)"))
            return;
        var results = remote.Kvmps.Upgrade(names, TimeSpan.FromSeconds(TimeoutSec));
        var listed = PassThru.IsPresent ? remote.Kvmps.List() : [];
        foreach (var result in results)
        {
            if (!result.Upgraded)
            {
                Output.WriteError(new KvmError(new VmUpgradeException(result.Name, result.OldPid ?? 0, $"On host '{remote.Display}': {result.Error}"),
                    KvmErrorIds.VmmUpgradeFailed, ErrorCategory.OperationStopped, result.Name));
                continue;
            }
            Output.WriteVerbose($"VM '{result.Name}' on host '{remote.Display}': kvmps-vmm pid {result.OldPid} -> {result.NewPid}, " +
                $"{(result.MemoryShared ? "memory passed as memfds" : "memory copied")}, total {result.TotalMs} ms" + (result.DowntimeMs is { } d ? $", downtime {d} ms" : ""));
            if (listed.FirstOrDefault(v => v.Name == result.Name) is { } vm)
                Output.WriteObject(remote.Wrap(vm));
        }
    }
}
