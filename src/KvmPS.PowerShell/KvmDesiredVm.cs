using System.Management.Automation;
using KvmPS.Management.DesiredState;
using KvmPS.Management.Lifecycle;

namespace KvmPS.PowerShell;

/// <summary>
/// One VM a manifest names, as Get-KvmDesiredState shows it: what the manifest asks (Ensure, State, the
/// definition), what the host has, and every difference. Flat properties for the views and for scripts;
/// <see cref="Status"/> has the management layer's full record.
/// </summary>
public sealed class KvmDesiredVm
{
    public KvmDesiredVm(DesiredVmStatus status)
    {
        Status = status ?? throw new ArgumentNullException(nameof(status));
        Vm = status.Actual is null ? null : new KvmVm(status.Actual);
    }

    /// <summary>Hidden, as the other management records here, so <c>Format-List *</c> shows no record dumps.</summary>
    [Hidden]
    public DesiredVmStatus Status { get; }

    public string Name => Status.Name;
    public VmEnsure Ensure => Status.Desired.Ensure;

    /// <summary>The power state the manifest asks for; null when it does not manage it.</summary>
    public DesiredPowerState? DesiredState => Status.Desired.State;

    /// <summary>The VM's state now; null when it does not exist.</summary>
    public VmState? State => Status.Actual?.State;

    public bool Exists => Status.Exists;
    public bool InDesiredState => Status.InDesiredState;
    public bool RestartIfNeeded => Status.Desired.RestartIfNeeded;

    /// <summary>Each difference, e.g. "web1.VcpuCount: expected 2, actual 1".</summary>
    public Drift[] Drifts => Status.Drifts.ToArray();

    /// <summary>The manifest's entry (the management record).</summary>
    [Hidden]
    public DesiredVm Desired => Status.Desired;

    /// <summary>The VM as management reads it; null when it does not exist (see <see cref="Vm"/> for the cmdlet view).</summary>
    [Hidden]
    public VmInfo? Actual => Status.Actual;

    /// <summary>The definition the manifest asks for; null for Ensure = 'Absent'.</summary>
    [Hidden]
    public Management.Definitions.VmDefinition? Definition => Status.Desired.Definition;

    /// <summary>The VM as it is now; null when it does not exist.</summary>
    public KvmVm? Vm { get; }

    /// <summary>Where the VM's entry is: file:line:column.</summary>
    public string Manifest => Status.Desired.Position.ToString();

    public override string ToString() => Name;
}
