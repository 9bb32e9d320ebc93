using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Vmm;

namespace KvmPS.Management.DesiredState;

/// <summary>
/// Computes drift and the ordered plan from a desired state and a snapshot of the host. Pure: no I/O, so every
/// transition is unit-testable and <c>-WhatIf</c> is exactly this with nothing executed.
/// <para>Plan order (each phase in manifest order: files in the order given, entries in file order):</para>
/// <list type="number">
/// <item><b>Remove</b> (Ensure = 'Absent'): Stop if active, then Remove. First, because removing frees host
/// memory, names and devices that later steps may need, and removal never depends on anything else.</item>
/// <item><b>Stop</b> VMs whose State should be Off, and clear crashed VMMs of VMs that should run (they are
/// started again in phase 5). Stopping before anything starts also frees memory first. A VM whose VMM does not
/// answer (<see cref="VmState.Unresponsive"/>, <see cref="VmState.Unknown"/>) gets no step at all, only its drift and a
/// warning: apply never kills a VMM it could not reach.</item>
/// <item><b>Update</b> existing VMs: <c>Update</c> (not running), <c>UpdateLive</c> (running, every change is
/// host-only or one the VMM applies live, see <see cref="LiveChangeRules"/>: same VMM before and after) or <c>UpdateNeedsRestart</c>; with RestartIfNeeded the last becomes Stop, Update, Start, kept
/// together so the VM is down as briefly as possible and the definition is written while it is off.</item>
/// <item><b>Create</b> new VMs. After updates, so a failing create leaves existing VMs already up to date.</item>
/// <item><b>Start / Resume / Suspend</b> to the wanted State. Last, because starting is the step most likely to
/// fail (kvmps-vmm launch, kernel missing): when it fails, every definition is already stored, and a re-run after
/// the fix only has the remaining starts to do.</item>
/// </list>
/// Each step is a single <see cref="VmManager"/> call that leaves the store consistent, so stopping at any
/// failure leaves a host that a re-run of the same plan finishes.
/// </summary>
public static class ReconcilePlanner
{
    public static ReconcilePlan Plan(DesiredHostState desired, IReadOnlyDictionary<string, ActualVm> actual)
    {
        ArgumentNullException.ThrowIfNull(desired);
        ArgumentNullException.ThrowIfNull(actual);
        var phases = Enumerable.Range(0, 5).Select(_ => new List<ReconcileAction>()).ToArray();
        var drifts = new List<Drift>();
        var warnings = new List<string>();
        foreach (var vm in desired.Vms)
        {
            actual.TryGetValue(vm.Name, out var current);
            PlanVm(vm, current, phases, drifts, warnings);
        }
        return new ReconcilePlan(phases.SelectMany(p => p).ToList(), drifts, warnings) { StopStepCount = phases[0].Count + phases[1].Count };
    }

    /// <summary>The drift of one VM (what <c>Test</c> reports for it).</summary>
    public static IReadOnlyList<Drift> DriftOf(DesiredVm vm, ActualVm? current)
    {
        var phases = Enumerable.Range(0, 5).Select(_ => new List<ReconcileAction>()).ToArray();
        var drifts = new List<Drift>();
        PlanVm(vm, current, phases, drifts, new List<string>());
        return drifts;
    }

    /// <summary>
    /// The definition the VM should have: its current one with the manifest's properties. Throws
    /// <see cref="DesiredStateException"/> when the stated properties cannot be combined with the VM's others.
    /// </summary>
    public static VmDefinition TargetDefinition(DesiredVm vm, VmDefinition current)
    {
        var target = DefinitionOverlay.Apply(current, vm.Definition!, vm.ManagedProperties);
        try
        {
            return target.Validate();
        }
        catch (VmDefinitionException e)
        {
            throw new DesiredStateException(vm.Position, vm.Name, e.Property,
                $"{e.Reason} (combining the manifest's {string.Join(", ", vm.ManagedProperties.Order(StringComparer.Ordinal))} with the VM's current definition; state the related properties too)", e);
        }
    }

    private static void PlanVm(DesiredVm vm, ActualVm? current, List<ReconcileAction>[] phases, List<Drift> drifts, List<string> warnings)
    {
        var name = vm.Name;
        var none = Array.Empty<Drift>();
        if (current is { State: VmState.Unresponsive or VmState.Unknown } unreachable)
        {
            // A VMM that cannot be reached may be running a healthy guest: apply never stops, kills or changes it. The
            // drift is reported and this VM gets no step; a later run continues once the VMM answers again.
            if (vm.Ensure == VmEnsure.Absent)
                drifts.Add(new Drift(name, "Ensure", "Absent", "Present"));
            else if (vm.State is { } wantedPower)
                drifts.Add(new Drift(name, "State", wantedPower.ToString(), unreachable.State.ToString()));
            warnings.Add($"VM '{name}' is {unreachable.State}" + (unreachable.StateReason is { } why ? $" ({why})" : "") +
                         ": left alone, nothing is planned for it (apply never stops or kills a VMM it cannot reach); run apply again once it answers, or stop it yourself (kvmps vm stop)");
            return;
        }
        if (vm.Ensure == VmEnsure.Absent)
        {
            if (current is null)
                return;
            drifts.Add(new Drift(name, "Ensure", "Absent", "Present"));
            if (current.IsActive || current.State != VmState.Off)
                phases[0].Add(new ReconcileAction(ReconcileActionKind.Stop, name, $"Stop VM '{name}'", $"it is {current.State} and must be removed", none));
            phases[0].Add(new ReconcileAction(ReconcileActionKind.Remove, name, $"Remove VM '{name}'", "Ensure is 'Absent'", none));
            return;
        }

        var definition = vm.Definition!;
        if (current is null)
        {
            drifts.Add(new Drift(name, "Ensure", "Present", "Absent"));
            phases[3].Add(new ReconcileAction(ReconcileActionKind.Create, name,
                $"Create VM '{name}' ({DisplayText.Count(definition.Vcpus.Count, "vCPU")}, {DisplayText.Bytes(definition.Memory.StartupBytes)})", "it does not exist", none, definition));
            PlanPower(vm, VmState.Off, vm.State, definition, phases[4], warnings);
            return;
        }

        // State drift is reported on what is there now, before any planned step.
        var actualPower = current.State;
        if (vm.State is { } wanted && !Matches(actualPower, wanted))
            drifts.Add(new Drift(name, "State", wanted.ToString(), actualPower.ToString()));

        var target = TargetDefinition(vm, current.Definition);
        var changes = VmDefinitionDiff.Compare(current.Definition, target)
            .Select(c => new Drift(name, c.Property, c.New, c.Old)).ToList();
        drifts.AddRange(changes);

        // Phase 2: stops. After it, `predicted` is the state the VM is in when phase 3 runs.
        var predicted = actualPower;
        var broken = actualPower is VmState.Crashed or VmState.Stopping;
        if (vm.State == DesiredPowerState.Off && (current.IsActive || actualPower != VmState.Off))
        {
            phases[1].Add(new ReconcileAction(ReconcileActionKind.Stop, name, $"Stop VM '{name}'",
                actualPower == VmState.Saved ? "it is Saved, the manifest wants Off: its saved state is discarded" : $"it is {actualPower}, the manifest wants Off", none));
            predicted = VmState.Off;
        }
        else if (vm.State is DesiredPowerState.Running or DesiredPowerState.Paused && broken)
        {
            phases[1].Add(new ReconcileAction(ReconcileActionKind.Stop, name, $"Stop VM '{name}'",
                $"it is {actualPower}; its VMM is cleared so it can be started again", none));
            predicted = VmState.Off;
        }

        // Phase 3: the definition.
        if (changes.Count > 0)
        {
            var summary = string.Join(", ", changes.Select(c => $"{c.Property} {Short(c.Actual)} -> {Short(c.Expected)}"));
            var running = predicted is VmState.Running or VmState.Paused or VmState.Starting;
            // What the running VMM takes live (vCPU count within its maximum, …) is applied by the Update step itself.
            var restartNeeded = LiveChangeRules.RestartNeeded(current.Definition, target, current.Limits);
            if (!running)
            {
                phases[2].Add(new ReconcileAction(ReconcileActionKind.Update, name, $"Update VM '{name}' ({summary})", "the stored definition differs", changes, target));
            }
            else if (restartNeeded.Count == 0)
            {
                phases[2].Add(new ReconcileAction(ReconcileActionKind.UpdateLive, name, $"Update VM '{name}' live ({summary})", "the stored definition differs", changes, target));
            }
            else if (vm.RestartIfNeeded)
            {
                var restore = vm.State ?? (predicted == VmState.Paused ? DesiredPowerState.Paused : DesiredPowerState.Running);
                phases[2].Add(new ReconcileAction(ReconcileActionKind.Stop, name, $"Stop VM '{name}'",
                    $"RestartIfNeeded: {string.Join(", ", restartNeeded)} only take effect at the next start", none));
                phases[2].Add(new ReconcileAction(ReconcileActionKind.Update, name, $"Update VM '{name}' ({summary})", "the stored definition differs", changes, target));
                phases[2].Add(new ReconcileAction(ReconcileActionKind.Start, name, $"Start VM '{name}'", "RestartIfNeeded: start it again with the new definition", none));
                warnings.AddRange(UnsupportedWarnings(name, target));
                predicted = VmState.Running;
                PlanPower(vm, predicted, restore, target, phases[4], warnings);
                return;
            }
            else
            {
                phases[2].Add(new ReconcileAction(ReconcileActionKind.UpdateNeedsRestart, name, $"Update VM '{name}' ({summary}; restart needed)",
                    "the stored definition differs", changes, target));
                warnings.Add($"VM '{name}' is {predicted}: the change to {string.Join(", ", restartNeeded)} is stored but takes effect only when the VM is restarted (set RestartIfNeeded = $true to restart it)");
            }
        }

        // Phase 5: the power state.
        PlanPower(vm, predicted, vm.State, target, phases[4], warnings);
    }

    private static void PlanPower(DesiredVm vm, VmState from, DesiredPowerState? wanted, VmDefinition definition, List<ReconcileAction> phase, List<string> warnings)
    {
        var name = vm.Name;
        var none = Array.Empty<Drift>();
        if (wanted is not { } to)
            return;
        switch (to)
        {
            // A saved VM is started like one that is off: the start resumes it from its saved state.
            case DesiredPowerState.Running when from is VmState.Off or VmState.Saved:
                phase.Add(new ReconcileAction(ReconcileActionKind.Start, name, $"Start VM '{name}'", from == VmState.Saved ? "it is Saved, the manifest wants Running" : "the manifest wants Running", none));
                warnings.AddRange(UnsupportedWarnings(name, definition));
                break;
            case DesiredPowerState.Running when from == VmState.Paused:
                phase.Add(new ReconcileAction(ReconcileActionKind.Resume, name, $"Resume VM '{name}'", "it is Paused, the manifest wants Running", none));
                break;
            case DesiredPowerState.Paused when from is VmState.Off or VmState.Saved:
                phase.Add(new ReconcileAction(ReconcileActionKind.Start, name, $"Start VM '{name}'", "the manifest wants Paused", none));
                phase.Add(new ReconcileAction(ReconcileActionKind.Suspend, name, $"Suspend VM '{name}'", "the manifest wants Paused", none));
                warnings.AddRange(UnsupportedWarnings(name, definition));
                break;
            case DesiredPowerState.Paused when from == VmState.Running:
                phase.Add(new ReconcileAction(ReconcileActionKind.Suspend, name, $"Suspend VM '{name}'", "it is Running, the manifest wants Paused", none));
                break;
        }
    }

    private static IEnumerable<string> UnsupportedWarnings(string name, VmDefinition definition)
    {
        var unsupported = VmmFeatureSupport.FindUnsupported(definition);
        if (unsupported.Count > 0)
            yield return $"VM '{name}' will not start: kvmps-vmm does not support {string.Join("; ", unsupported)} yet";
    }

    private static bool Matches(VmState actual, DesiredPowerState wanted) => wanted switch
    {
        DesiredPowerState.Running => actual == VmState.Running,
        DesiredPowerState.Paused => actual == VmState.Paused,
        _ => actual == VmState.Off,
    };

    private static string Short(string? value) => value is null ? "(none)" : value.Length > 40 ? value[..37] + "..." : value;
}
