using System.Management.Automation;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Remote;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>
/// Move-KvmVm: live migration of a running VM to another host over SSH (Hyper-V's Move-VM, virsh migrate --live;
/// VmManager.Move, docs/migration.md "Moving a VM to another host"). Once the destination runs the VM it leaves this
/// host; any failure leaves it running here and the destination clean. With -HostName the VM moves from that host
/// (its kvmps vm migrate, run through ssh).
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

    /// <summary>
    /// The host the VM is on now (<c>host</c> or <c>user@host</c>), when not this one: kvmps vm migrate runs there
    /// through ssh and reaches -DestinationHost with that host's own ssh setup.
    /// </summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [Alias("ComputerName")]
    public string? HostName { get; set; }

    /// <summary>The SSH user: on -HostName when given, else on the destination (else the one in the host name, else ssh's default).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? UserName { get; set; }

    /// <summary>The private key ssh offers: to -HostName when given, else to the destination (else ssh's own keys and agent).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? KeyFilePath { get; set; }

    /// <summary>Send the stream through the ssh connection (encrypted, no port opened) instead of straight to a TCP port of the destination.</summary>
    [Parameter]
    public SwitchParameter Tunnel { get; set; }

    /// <summary>The destination's address to listen on and be reached at (default: the one ssh reached it by); not with -Tunnel.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? MigrationAddress { get; set; }

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
        if (Tunnel.IsPresent && MigrationAddress is not null)
            throw KvmParameterException.Combination("MigrationAddress", MigrationAddress, "-MigrationAddress is for the direct TCP stream; with -Tunnel the stream goes through ssh.");
        // Without -HostName, -UserName and -KeyFilePath are the destination's (as before -HostName existed).
        if (HostName is not null && RemoteHost.From(this, HostName, UserName, KeyFilePath) is { } source)
        {
            ProcessRemoteSource(source);
            return;
        }
        _destination = RemoteHost.From(this, DestinationHost, UserName, KeyFilePath)!;
        _transport = new SshTransport(SshTransportOptions.FromEnvironment() with { KeyFilePath = _destination.KeyFilePath });
        base.Process();
    }

    private VmMoveOptions MoveOptions() => new()
    {
        DowntimeMs = DowntimeMs,
        BandwidthBytesPerSecond = BandwidthBytesPerSecond,
        AutoConverge = AutoConverge.IsPresent,
        IncludeStorage = IncludeStorage.IsPresent,
        Tunnel = Tunnel.IsPresent,
        MigrationAddress = MigrationAddress,
        Timeout = TimeSpan.FromSeconds(TimeoutSec),
        Cancellation = _stopping.Token,
    };

    /// <summary>Ctrl+C: the move in progress is cancelled (the VM runs on here), not abandoned mid-way.</summary>
    private readonly CancellationTokenSource _stopping = new();

    protected override void StopProcessing()
    {
        _stopping.Cancel();
        base.StopProcessing();
    }

    /// <summary>-HostName: the VM moves from that host; its kvmps does the move (the same checks and failures).</summary>
    private void ProcessRemoteSource(RemoteHost source)
    {
        if (Vm is not null)
            throw KvmParameterException.Combination("Vm", Vm, "-Vm takes VMs of this host; for a VM on -HostName give -Name (or pipe Get-KvmVm -HostName).");
        try
        {
            _ = SshTarget.Parse(DestinationHost); // an option-like name is refused here, before any ssh runs
        }
        catch (InvalidRemoteNameException e)
        {
            throw new KvmParameterException("DestinationHost", e.Value, e.Message, e);
        }
        var selection = VmResolver.Resolve(source.ListNames(), Name, null);
        foreach (var missing in selection.NotFound)
            Output.WriteError(source.VmNotFound(missing));
        foreach (var name in selection.Names)
            ForTarget(name, () =>
            {
                if (!Output.ShouldProcess($"{name} on host {source.Display}", $"Move the VM to host '{DestinationHost}' (live migration; the VM leaves host '{source.Display}')"))
                    return;
                var result = source.Kvmps.Move(name, DestinationHost, MoveOptions(), Output.Progress());
                WriteResult(name, result, RemoteHost.From(this, DestinationHost, null, KeyFilePath)!);
            });
    }

    protected override void ProcessVm(string name)
    {
        var destination = _destination!;
        if (!Output.ShouldProcess(name, $"Move the running VM to host '{destination.Display}' (live migration over SSH; the VM leaves this host)"))
            return;
        var result = Manager.Move(name, destination.Kvmps.Target, _transport!, MoveOptions(), Output.Progress());
        WriteResult(name, result, destination);
    }

    private void WriteResult(string name, VmMoveResult result, RemoteHost destination)
    {
        Output.WriteVerbose($"VM '{name}' moved to host '{result.DestinationHost}' (kvmps-vmm pid {result.DestinationPid} there{(result.Paused ? ", paused" : "")}) over {result.Transport} ({result.StreamUri}): " +
            $"total {result.Total.TotalMilliseconds:0} ms" + (result.Downtime is { } d ? $", downtime {d.TotalMilliseconds:0} ms" : "") + $", {result.BytesSent} bytes" +
            (IncludeStorage.IsPresent ? $" ({result.DiskBytesSent} of them disk data); the disk images stay on this host" + (result.RetainedDisksDirectory is { } kept ? $" (the store's in {kept})" : "") : ""));
        if (!PassThru.IsPresent) return;
        if (destination.Kvmps.List().FirstOrDefault(v => v.Name == name) is { } moved)
            Output.WriteObject(destination.Wrap(moved));
        else
            Output.WriteError(destination.VmNotFound(name));
    }
}
