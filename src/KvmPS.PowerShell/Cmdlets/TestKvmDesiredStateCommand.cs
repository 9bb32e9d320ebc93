using System.Management.Automation;
using KvmPS.Management.DesiredState;

namespace KvmPS.Commands;

/// <summary>Test-KvmDesiredState: $true when the host matches the manifests; -Detailed: one Drift object per differing property.</summary>
[Cmdlet(VerbsDiagnostic.Test, "KvmDesiredState")]
[OutputType(typeof(bool), typeof(Drift))]
public sealed class TestKvmDesiredStateCommand : KvmDesiredStateCmdletBase
{
    [Parameter]
    public SwitchParameter Detailed { get; set; }

    protected override void EndWithManifests(DesiredHostState desired)
    {
        var drifts = new Reconciler(Manager).Test(desired);
        if (!Detailed.IsPresent)
        {
            Output.WriteObject(drifts.Count == 0);
            return;
        }
        foreach (var drift in drifts)
            Output.WriteObject(drift);
    }
}
