using System.Management.Automation;
using KvmPS.Management.DesiredState;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Remote;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>
/// Invoke-KvmDesiredState: makes the host match the manifests (plan, then run it). -WhatIf shows each planned
/// step and changes nothing; with -Confirm, declining any step runs none (the plan runs as a whole). A manifest
/// naming a HostName is planned and applied on that host (docs/remote.md); its results carry that HostName.
/// </summary>
[Cmdlet(VerbsLifecycle.Invoke, "KvmDesiredState", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(ReconcileActionResult), typeof(KvmJob))]
public sealed class InvokeKvmDesiredStateCommand : KvmDesiredStateCmdletBase
{
    [Parameter]
    public SwitchParameter AsJob { get; set; }

    protected override void EndWithManifests(DesiredHostState? desired, IReadOnlyList<RemoteManifestRun> remote)
    {
        var reconciler = new Reconciler(Manager);
        var plan = desired is null ? null : reconciler.Plan(desired);
        var steps = new List<(ReconcileAction Action, string? HostName)>();
        if (plan is not null)
        {
            foreach (var warning in plan.Warnings)
                Output.WriteWarning(warning);
            steps.AddRange(plan.Actions.Select(a => (a, (string?)null)));
        }
        // Each remote manifest is planned there first, so -WhatIf and -Confirm show its steps before any host changes.
        var remoteToRun = new List<RemoteManifestRun>();
        foreach (var run in remote)
        {
            ReconcilePlan remotePlan;
            try
            {
                remotePlan = run.Reconciler.Plan(run.Text);
            }
            catch (RemoteHostException e)
            {
                Output.WriteError(RemoteHostErrors.Classify(e, run.Manifest.Path));
                continue;
            }
            foreach (var warning in remotePlan.Warnings)
                Output.WriteWarning($"host '{run.HostName}': {warning}");
            if (remotePlan.IsEmpty)
                Output.WriteVerbose($"Host '{run.HostName}' is in the desired state of {run.Manifest.Path}; nothing to do there.");
            else
                remoteToRun.Add(run);
            steps.AddRange(remotePlan.Actions.Select(a => (a, (string?)run.HostName)));
        }
        if (steps.Count == 0)
        {
            Output.WriteVerbose("The host is in the desired state; nothing to do.");
            return;
        }
        var approved = true;
        foreach (var (action, hostName) in steps)
            approved &= Output.ShouldProcess(hostName is null ? action.Target() : $"{action.Target()} on host '{hostName}'", action.Verb());
        if (!approved)
            return;
        var files = (desired?.Files ?? []).Concat(remoteToRun.Select(r => r.Manifest.Path));
        var name = string.Join(",", files.Select(System.IO.Path.GetFileName));
        KvmJobs.RunOrQueue(this, AsJob.IsPresent, "Invoke-KvmDesiredState", name, output =>
        {
            if (desired is not null && plan is { IsEmpty: false })
            {
                var result = reconciler.Set(desired, new SynchronousProgress(p =>
                {
                    output.WriteProgress("Invoke-KvmDesiredState", p.Status, p.PercentComplete, p.Completed);
                    if (p.Stage != ProgressStage.StepStarted)
                        output.WriteVerbose($"[{p.Step}/{p.StepCount}] {p.Status}");
                }));
                foreach (var r in result.Results)
                {
                    output.WriteObject(r);
                    if (r.Status == ReconcileActionStatus.Failed && r.Error is { } error)
                        output.WriteError(KvmErrorMapping.FromException(error, r.Action.VmName));
                }
            }
            foreach (var run in remoteToRun)
            {
                output.WriteProgress("Invoke-KvmDesiredState", $"Applying {run.Manifest.Path} on host '{run.HostName}'", -1, completed: false);
                RemoteReconcileResult result;
                try
                {
                    result = run.Reconciler.Set(run.Text);
                }
                catch (RemoteHostException e)
                {
                    output.WriteError(RemoteHostErrors.Classify(e, run.Manifest.Path));
                    continue;
                }
                foreach (var r in result.Results)
                {
                    output.WriteObject(ForHost(r, run.HostName));
                    if (r.Status == ReconcileActionStatus.Failed && r.Error is RemoteHostException error)
                        output.WriteError(RemoteHostErrors.Classify(error, r.Action.VmName));
                }
            }
            if (remoteToRun.Count > 0)
                output.WriteProgress("Invoke-KvmDesiredState", "Done", 100, completed: true);
        });
    }
}
