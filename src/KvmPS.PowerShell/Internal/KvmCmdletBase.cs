using System.Management.Automation;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Store;

namespace KvmPS.PowerShell.Internal;

/// <summary>
/// Base of every KvmPS cmdlet: opens the store and the <see cref="VmManager"/> once per invocation, routes all
/// output through <see cref="ICmdletOutput"/> (so cmdlets run in unit tests), and turns management exceptions
/// into ErrorRecords with stable ids (<see cref="KvmErrorMapping"/>).
/// </summary>
public abstract class KvmCmdletBase : PSCmdlet, ICmdletOutput
{
    private VmManager? _manager;

    /// <summary>Test seam: where output goes. Null means this cmdlet's own runtime.</summary>
    internal ICmdletOutput? OutputOverride { get; set; }

    /// <summary>Test seam: the manager to use instead of one over the default store.</summary>
    internal VmManager? ManagerOverride { get; set; }

    internal ICmdletOutput Output => OutputOverride ?? this;

    /// <summary>The lifecycle API over the store at $KVMPS_HOME (or the default location).</summary>
    internal VmManager Manager => _manager ??= ManagerOverride ?? CreateDefaultManager();

    internal static VmManager CreateDefaultManager() =>
        VmManager.OpenDefault();

    /// <summary>Runs the cmdlet's begin/process/end steps without a runspace (unit tests).</summary>
    internal void InvokeForTest(ICmdletOutput output, VmManager? manager = null)
    {
        OutputOverride = output;
        ManagerOverride = manager;
        if (!Guard(Begin, terminating: true))
            return;
        RunProcess();
        RunEnd();
    }

    /// <summary>
    /// Test seam: the switch parameters to treat as present. Outside pwsh, SwitchParameter is PowerShellStandard's
    /// stub and always reads as absent, so tests name the switches they set here.
    /// </summary>
    internal HashSet<string> TestSwitches { get; } = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>Whether a switch parameter is present (use as <c>Switch(PassThru)</c>).</summary>
    internal bool Switch(SwitchParameter value, [System.Runtime.CompilerServices.CallerArgumentExpression(nameof(value))] string name = "") =>
        OutputOverride is null ? value.IsPresent : TestSwitches.Contains(name);

    protected virtual void Begin() { }
    protected virtual void Process() { }
    protected virtual void End() { }

    protected sealed override void BeginProcessing() => RunBegin();
    protected sealed override void ProcessRecord() => RunProcess();
    protected sealed override void EndProcessing() => RunEnd();

    private void RunBegin() => Guard(Begin, terminating: true);
    private void RunProcess() => Guard(Process, terminating: false);
    private void RunEnd() => Guard(End, terminating: false);

    private bool Guard(Action step, bool terminating)
    {
        try
        {
            step();
            return true;
        }
        catch (Exception e) when (e is not PipelineStoppedException and not PipelineDepthException and not OutOfMemoryException)
        {
            var error = KvmErrorMapping.FromException(e, null);
            if (terminating && OutputOverride is null)
                ThrowTerminatingError(error.ToErrorRecord());
            Output.WriteError(error);
            return false;
        }
    }

    /// <summary>Runs <paramref name="action"/> for one target; a failure becomes a non-terminating error naming it.</summary>
    internal void ForTarget(object target, Action action)
    {
        try
        {
            action();
        }
        catch (Exception e) when (e is not PipelineStoppedException and not OutOfMemoryException)
        {
            Output.WriteError(KvmErrorMapping.FromException(e, target));
        }
    }

    /// <summary>
    /// Reports how a definition change took effect. Changes a running VM could not take live are only stored:
    /// with <paramref name="restartIfNeeded"/> (and confirmation) the VM is restarted, otherwise a warning says so.
    /// </summary>
    internal void ReportChange(ChangeResult result, bool restartIfNeeded)
    {
        foreach (var change in result.Changes)
            Output.WriteVerbose($"VM '{result.Name}': {change.Property}: {change.OldValue ?? "(none)"} -> {change.NewValue ?? "(none)"} ({change.Application})");
        if (!result.RestartNeeded)
            return;
        var properties = string.Join(", ", result.Changes.Where(c => c.Application == ChangeApplication.RestartNeeded).Select(c => c.Property));
        if (restartIfNeeded)
        {
            if (Output.ShouldProcess(result.Name, $"Restart the VM to apply {properties}"))
                Manager.Restart(result.Name);
            return;
        }
        Output.WriteWarning($"VM '{result.Name}' is {result.State}; the change to {properties} is stored and takes effect when the VM is restarted (use -RestartIfNeeded to restart it now).");
    }

    // ---- ICmdletOutput over the real runtime --------------------------------------------------------------

    void ICmdletOutput.WriteObject(object? value) => WriteObject(value);
    void ICmdletOutput.WriteError(KvmError error) => WriteError(error.ToErrorRecord());
    void ICmdletOutput.WriteWarning(string message) => WriteWarning(message);
    void ICmdletOutput.WriteVerbose(string message) => WriteVerbose(message);

    void ICmdletOutput.WriteProgress(string activity, string status, int percentComplete, bool completed)
    {
        var record = new ProgressRecord(Math.Abs(activity.GetHashCode()) % 100000, activity, status)
        {
            PercentComplete = Math.Clamp(percentComplete, -1, 100),
            RecordType = completed ? ProgressRecordType.Completed : ProgressRecordType.Processing,
        };
        WriteProgress(record);
    }

    bool ICmdletOutput.ShouldProcess(string target, string action) => ShouldProcess(target, action);
}
