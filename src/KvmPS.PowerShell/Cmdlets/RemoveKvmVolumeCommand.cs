using System.Management.Automation;
using KvmPS.Management.Pools;
using KvmPS.PowerShell.Completers;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Remove-KvmVolume: deletes a volume's file; refused while a VM definition (or another volume, as backing) uses it.</summary>
[Cmdlet(VerbsCommon.Remove, "KvmVolume", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
[OutputType(typeof(StorageVolumeInfo))]
public sealed class RemoveKvmVolumeCommand : KvmPoolCmdletBase
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(StorageVolumeNameCompleter))]
    public string[] Name { get; set; } = [];

    /// <summary>The pool; <c>default</c> without it.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(StoragePoolNameCompleter))]
    public string Pool { get; set; } = StoragePoolNames.DefaultPool;

    /// <summary>Write the removed volume (as it was) to the pipeline.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessLocal()
    {
        foreach (var name in Name)
            ForTarget(name, () =>
            {
                var volume = Pools.GetVolume(Pool, name);
                if (!Output.ShouldProcess($"{Pool}/{name}", $"Delete volume '{volume.Path}'"))
                    return;
                Pools.RemoveVolume(Pool, name);
                if (PassThru.IsPresent)
                    Output.WriteObject(volume);
            });
    }

    internal override void ProcessRemote(RemoteHost remote)
    {
        ForEachRemote(remote, Name, n => $"{Pool}/{n}", "Delete volume", n => ["vol", "remove", "--json", "--", Pool, n], RemoteObject.StorageVolume, PassThru.IsPresent);
    }
}
