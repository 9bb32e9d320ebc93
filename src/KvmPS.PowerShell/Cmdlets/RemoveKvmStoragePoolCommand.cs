using System.Management.Automation;
using KvmPS.Management.Pools;
using KvmPS.PowerShell.Completers;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Remove-KvmStoragePool: forgets a pool (its folder and volumes stay); refused while VMs use its volumes.</summary>
[Cmdlet(VerbsCommon.Remove, "KvmStoragePool", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(StoragePoolInfo))]
public sealed class RemoveKvmStoragePoolCommand : KvmPoolCmdletBase
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(StoragePoolNameCompleter))]
    public string[] Name { get; set; } = [];

    /// <summary>Write the removed pool (as it was) to the pipeline.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessLocal()
    {
        foreach (var name in Name)
            ForTarget(name, () =>
            {
                var pool = Pools.Get(name);
                if (!Output.ShouldProcess(name, $"Remove storage pool (its folder '{pool.Path}' and volumes stay)"))
                    return;
                Pools.Remove(name);
                if (PassThru.IsPresent)
                    Output.WriteObject(pool);
            });
    }

    internal override void ProcessRemote(RemoteHost remote)
    {
        ForEachRemote(remote, Name, n => n, "Remove storage pool (its folder and volumes stay)", n => ["pool", "remove", "--json", "--", n], RemoteObject.StoragePool, PassThru.IsPresent);
    }
}
