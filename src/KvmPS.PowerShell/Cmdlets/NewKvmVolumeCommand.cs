using System.Management.Automation;
using KvmPS.Management.Definitions;
using KvmPS.Management.Pools;
using KvmPS.PowerShell.Completers;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>New-KvmVolume: creates a sparse raw or qcow2 volume in a pool, optionally over a backing volume of the same pool.</summary>
[Cmdlet(VerbsCommon.New, "KvmVolume", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(StorageVolumeInfo))]
public sealed class NewKvmVolumeCommand : KvmPoolCmdletBase
{
    /// <summary>The volume's file name in the pool (no '/', not '.' or '..').</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(StorageVolumeNameCompleter))]
    public string Name { get; set; } = "";

    /// <summary>Virtual size; a multiple of 512. Optional with -BackingVolume (then the backing volume's size).</summary>
    [Parameter(Position = 1, ValueFromPipelineByPropertyName = true)]
    [ValidateRange(512, long.MaxValue)]
    [Alias("Size")]
    public long? SizeBytes { get; set; }

    /// <summary>The pool; <c>default</c> without it.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(StoragePoolNameCompleter))]
    public string Pool { get; set; } = StoragePoolNames.DefaultPool;

    /// <summary>Raw or Qcow2; by default qcow2 for *.qcow2 names or with -BackingVolume, raw otherwise.</summary>
    [Parameter]
    public DiskFormat? Format { get; set; }

    /// <summary>A volume of the same pool the new qcow2 volume is a copy-on-write overlay of.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? BackingVolume { get; set; }

    protected override void ProcessLocal()
    {
        var format = Format ?? DiskDefinition.DefaultFormat(Name, BackingVolume);
        var size = SizeBytes is { } bytes ? DisplayText.Bytes(bytes) : "the size of " + BackingVolume;
        if (!Output.ShouldProcess($"{Pool}/{Name}", $"Create {format} volume ({size})"))
            return;
        Output.WriteObject(Pools.CreateVolume(Pool, Name, SizeBytes, Format, BackingVolume));
    }

    internal override void ProcessRemote(RemoteHost remote)
    {
        var size = SizeBytes is { } bytes ? DisplayText.Bytes(bytes) : "the size of " + BackingVolume;
        if (!Output.ShouldProcess($"{Pool}/{Name} on host {remote.Display}", $"Create {Format?.ToString() ?? "a"} volume ({size})"))
            return;
        var arguments = new List<string> { "vol", "create", "--json" };
        if (SizeBytes is { } sizeBytes)
            // Bytes said as such ("4096B"): kvmps refuses a bare number.
            arguments.AddRange(["--size", sizeBytes.ToString(System.Globalization.CultureInfo.InvariantCulture) + "B"]);
        if (Format is { } format)
            arguments.AddRange(["--format", format.ToString().ToLowerInvariant()]);
        if (BackingVolume is not null)
            arguments.AddRange(["--backing", BackingVolume]);
        arguments.AddRange(["--", Pool, Name]);
        foreach (var volume in remote.Objects(arguments, RemoteObject.StorageVolume))
            Output.WriteObject(volume);
    }
}
