using System.Management.Automation;
using KvmPS.Management.DesiredState;
using KvmPS.Management.Lifecycle;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>
/// Invoke-KvmDesiredState: makes the host match the manifests (plan, then run it). -WhatIf shows each planned
/// step and changes nothing; with -Confirm, declining any step runs none (the plan runs as a whole).
/// </summary>
[Cmdlet(VerbsLifecycle.Invoke, "KvmDesiredState", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(ReconcileActionResult), typeof(KvmJob))]
public sealed class InvokeKvmDesiredStateCommand : KvmDesiredStateCmdletBase
{
    [Parameter]
    public SwitchParameter AsJob { get; set; }

    protected override void EndWithManifests(DesiredHostState desired)
    {
        var reconciler = new Reconciler(Manager);
        var plan = reconciler.Plan(desired);
        foreach (var warning in plan.Warnings)
            Output.WriteWarning(warning);
        if (plan.IsEmpty)
        {
            Output.WriteVerbose("The host is in the desired state; nothing to do.");
            return;
        }
        var approved = true;
        foreach (var action in plan.Actions)
            approved &= Output.ShouldProcess(action.Target(), action.Verb());
        if (!approved)
            return;
        var name = string.Join(",", desired.Files.Select(System.IO.Path.GetFileName));
        KvmJobs.RunOrQueue(this, AsJob.IsPresent, "Invoke-KvmDesiredState", name, output =>
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
        });
    }
}
