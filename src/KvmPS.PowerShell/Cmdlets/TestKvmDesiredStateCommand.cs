using System.Management.Automation;
using KvmPS.Management.DesiredState;
using KvmPS.Management.Remote;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>
/// Test-KvmDesiredState: $true when every host matches its manifests (this host, and each host a manifest names);
/// -Detailed: one Drift object per differing property, with a HostName for another host's.
/// </summary>
[Cmdlet(VerbsDiagnostic.Test, "KvmDesiredState")]
[OutputType(typeof(bool), typeof(Drift))]
public sealed class TestKvmDesiredStateCommand : KvmDesiredStateCmdletBase
{
    [Parameter]
    public SwitchParameter Detailed { get; set; }

    protected override void EndWithManifests(DesiredHostState? desired, IReadOnlyList<RemoteManifestRun> remote)
    {
        var drifts = new List<object>();
        if (desired is not null)
            drifts.AddRange(new Reconciler(Manager).Test(desired));
        var unknown = false;
        foreach (var run in remote)
        {
            try
            {
                drifts.AddRange(run.Reconciler.Test(run.Text).Select(d => ForHost(d, run.HostName)));
            }
            catch (RemoteHostException e)
            {
                // A host that cannot be asked is not known to be in the desired state.
                Output.WriteError(RemoteHostErrors.Classify(e, run.Manifest.Path));
                unknown = true;
            }
        }
        if (!Detailed.IsPresent)
        {
            Output.WriteObject(drifts.Count == 0 && !unknown);
            return;
        }
        foreach (var drift in drifts)
            Output.WriteObject(drift);
    }
}
