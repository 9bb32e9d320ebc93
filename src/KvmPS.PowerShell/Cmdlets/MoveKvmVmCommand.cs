using System.Management.Automation;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Remote;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>
/// Move-KvmVm: live migration of a running VM to another host over SSH (Hyper-V's Move-VM, virsh migrate --live;
/// VmManager.Move, docs/migration.md "Moving a VM to another host"). Once the destination runs the VM it leaves this
/// host; any failure leaves it running here and the destination clean.
/// </summary>
[Cmdlet(VerbsCommon.Move, "KvmVm", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmRemoteVm))]
public sealed class MoveKvmVmCommand : KvmVmCmdletBase
{
    private RemoteHost? _destination;
    private SshTransport? _transport;

    /// <summary>The host to move to (<c>host</c> or <c>user@host</c>): kvmps there, key-based ssh.</summary>
    [Parameter(Mandatory = true, Position = 1)]
    [ValidateNotNullOrEmpty]
    [Alias("DestinationComputerName")]
    public string DestinationHost { get; set; } = "";

    /// <summary>The SSH user on the destination (else the one in -DestinationHost, else ssh's default).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? UserName { get; set; }

    /// <summary>The private key ssh offers (else ssh's own keys and agent).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? KeyFilePath { get; set; }

    /// <summary>The longest pause of the guest at the hand-over (default 300 ms).</summary>
    [Parameter]
    [ValidateRange(1, 60000)]
    public int? DowntimeMs { get; set; }

    /// <summary>Send memory no faster than this during pre-copy (default: as fast as the link goes).</summary>
    [Parameter]
    [ValidateRange(65536, long.MaxValue)]
    public long? BandwidthBytesPerSecond { get; set; }

    /// <summary>Throttle the vCPUs when the guest dirties memory faster than the link sends it.</summary>
    [Parameter]
    public SwitchParameter AutoConverge { get; set; }

    /// <summary>
    /// Copy the disks live too (no shared storage): into the destination store's disk folder of the VM, same file names;
    /// the images on this host are kept.
    /// </summary>
    [Parameter]
    public SwitchParameter IncludeStorage { get; set; }

    /// <summary>How long one VM's move may take before it is cancelled (the VM then runs on here).</summary>
    [Parameter]
    [ValidateRange(1, 86400)]
    public int TimeoutSec { get; set; } = (int)VmManager.DefaultMoveTimeout.TotalSeconds;

    /// <summary>Returns the VM as the destination reports it (its HostName is the destination).</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void Process()
    {
        _destination = RemoteHost.From(this, DestinationHost, UserName, KeyFilePath)!;
        _transport = new SshTransport(SshTransportOptions.FromEnvironment() with { KeyFilePath = _destination.KeyFilePath });
        base.Process();
    }

    protected override void ProcessVm(string name)
    {
        var destination = _destination!;
        if (!Output.ShouldProcess(name, $"Move the running VM to host '{destination.Display}' (live migration over SSH; the VM leaves this host)"))
            return;
        var result = Manager.Move(name, destination.Kvmps.Target, _transport!, new VmMoveOptions
        {
            DowntimeMs = DowntimeMs,
            BandwidthBytesPerSecond = BandwidthBytesPerSecond,
            AutoConverge = AutoConverge.IsPresent,
            IncludeStorage = IncludeStorage.IsPresent,
            Timeout = TimeSpan.FromSeconds(TimeoutSec),
        }, Output.Progress());
        Output.WriteVerbose($"VM '{name}' moved to host '{result.DestinationHost}' (kvmps-vmm pid {result.DestinationPid} there): " +
            $"total {result.Total.TotalMilliseconds:0} ms" + (result.Downtime is { } d ? $", downtime {d.TotalMilliseconds:0} ms" : "") + $", {result.BytesSent} bytes" +
            (IncludeStorage.IsPresent ? $" ({result.DiskBytesSent} of them disk data); the disk images stay on this host" + (result.RetainedDisksDirectory is { } kept ? $" (the store's in {kept})" : "") : ""));
        if (!PassThru.IsPresent) return;
        if (destination.Kvmps.List().FirstOrDefault(v => v.Name == name) is { } moved)
            Output.WriteObject(destination.Wrap(moved));
        else
            Output.WriteError(destination.VmNotFound(name));
    }
}
