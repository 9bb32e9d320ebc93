using System.Management.Automation;
using KvmPS.Management.Pools;
using KvmPS.PowerShell.Completers;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>New-KvmStoragePool: defines a directory pool (a folder of raw and qcow2 volumes), kept in the store.</summary>
[Cmdlet(VerbsCommon.New, "KvmStoragePool", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(StoragePoolInfo))]
public sealed class NewKvmStoragePoolCommand : KvmPoolCmdletBase
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(StoragePoolNameCompleter))]
    public string Name { get; set; } = "";

    /// <summary>The pool's folder; relative paths are resolved against the current location.</summary>
    [Parameter(Mandatory = true, Position = 1, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [Alias("FullName")]
    public string Path { get; set; } = "";

    /// <summary>kvmps autostart checks (and re-creates) the pool's folder before starting VMs.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    public SwitchParameter Autostart { get; set; }

    /// <summary>Create the folder (0700) when it does not exist.</summary>
    [Parameter]
    public SwitchParameter CreatePath { get; set; }

    protected override void ProcessLocal()
    {
        var path = ResolvePath(Path);
        if (!Output.ShouldProcess(Name, $"Create storage pool on '{path}'" + (Autostart.IsPresent ? " (autostart)" : "")))
            return;
        Output.WriteObject(Pools.Create(Name, path, Autostart.IsPresent, CreatePath.IsPresent));
    }

    /// <summary>-HostName: kvmps pool create there; -Path is a folder on that host (give it absolute).</summary>
    internal override void ProcessRemote(RemoteHost remote)
    {
        if (!Output.ShouldProcess($"{Name} on host {remote.Display}", $"Create storage pool on '{Path}'" + (Autostart.IsPresent ? " (autostart)" : "")))
            return;
        var arguments = new List<string> { "pool", "create", "--json" };
        if (Autostart.IsPresent)
            arguments.Add("--autostart");
        if (CreatePath.IsPresent)
            arguments.Add("--create-path");
        arguments.AddRange(["--", Name, Path]);
        foreach (var pool in remote.Objects(arguments, RemoteObject.StoragePool))
            Output.WriteObject(pool);
    }
}
