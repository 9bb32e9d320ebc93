using System.Management.Automation;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>
/// Import-KvmVm: brings an exported VM into the store (Hyper-V's Import-VM). The export is moved in, or copied with
/// -Copy; -GenerateNewId makes a clone with new MAC addresses and a new vsock CID.
/// </summary>
[Cmdlet(VerbsData.Import, "KvmVm", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmVm))]
public sealed class ImportKvmVmCommand : KvmRemoteCmdletBase
{
    /// <summary>The exported VM's folder (PATH/NAME as Export-KvmVm made it), or the folder holding exactly one.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [Alias("FullName")]
    public string? Path { get; set; }

    /// <summary>Copy the export into the store and leave it where it is (default: move it).</summary>
    [Parameter]
    public SwitchParameter Copy { get; set; }

    /// <summary>A clone: new MAC addresses and vsock CID, so it can run beside the original.</summary>
    [Parameter]
    public SwitchParameter GenerateNewId { get; set; }

    protected override void ProcessLocal()
    {
        var path = ResolvePath(Path!);
        ForTarget(path, () =>
        {
            if (!Output.ShouldProcess(path, Action))
                return;
            Output.WriteObject(new KvmVm(Manager.Import(path, Copy.IsPresent, GenerateNewId.IsPresent)));
        });
    }

    private string Action => (Copy.IsPresent ? "Import a copy of the VM" : "Import the VM (moving it into the store)") + (GenerateNewId.IsPresent ? " with new MAC addresses and vsock CID" : "");

    /// <summary>-HostName: kvmps vm import there; -Path is a folder on that host (not resolved here).</summary>
    internal override void ProcessRemote(RemoteHost remote)
    {
        ForTarget(Path!, () =>
        {
            if (!Output.ShouldProcess($"{Path} on host {remote.Display}", Action))
                return;
            var arguments = new List<string> { "vm", "import", "--json" };
            if (Copy.IsPresent)
                arguments.Add("--copy");
            if (GenerateNewId.IsPresent)
                arguments.Add("--new-id");
            arguments.AddRange(["--", Path!]);
            Output.WriteObject(remote.RunVm(arguments));
        });
    }
}
