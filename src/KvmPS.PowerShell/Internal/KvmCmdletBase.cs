using System.Management.Automation;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Store;

namespace KvmPS.PowerShell.Internal;

/// <summary>
/// Base of every KvmPS cmdlet: opens the <see cref="VmManager"/> over the store at $KVMPS_HOME once per
/// invocation, and turns management exceptions into ErrorRecords with stable ids (<see cref="KvmErrorMapping"/>)
/// that name the parameters the user typed (<see cref="CmdletParameterNames"/>), not the schema keys management
/// speaks in.
/// </summary>
public abstract class KvmCmdletBase : PSCmdlet, ICmdletOutput
{
    private VmManager? _manager;

    /// <summary>Where output goes: this cmdlet's runtime (jobs write through their own <see cref="ICmdletOutput"/>).</summary>
    internal ICmdletOutput Output => this;

    /// <summary>The lifecycle API over the store at $KVMPS_HOME (or the default location).</summary>
    internal VmManager Manager => _manager ??= VmManager.OpenDefault();

    /// <summary>A path parameter resolved against the current PowerShell location (not the process's directory).</summary>
    internal string ResolvePath(string path) => GetUnresolvedProviderPathFromPSPath(path);

    /// <summary>Maps an exception to the error this cmdlet reports, naming this invocation's parameters.</summary>
    internal KvmError ErrorFor(Exception exception, object? target) =>
        KvmErrorMapping.FromException(exception, target, new CmdletParameterNames(this).ParameterFor);

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
            var error = ErrorFor(e, null);
            if (terminating)
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
            Output.WriteError(ErrorFor(e, target));
        }
    }

    /// <summary>
    /// Reports how a definition change took effect. Changes a running VM could not take live are only stored:
    /// with <paramref name="restartIfNeeded"/> (and confirmation) the VM is restarted, otherwise a warning says so.
    /// </summary>
    internal void ReportChange(ChangeResult result, bool restartIfNeeded)
    {
        // Name what the user typed (-ProcessorCount), not the schema key (VcpuCount), where a parameter sets it.
        var parameters = new CmdletParameterNames(this);
        string Show(string property) => parameters.ParameterFor(property) is { } p ? "-" + p : property;
        foreach (var change in result.Changes)
            Output.WriteVerbose($"VM '{result.Name}': {Show(change.Property)}: {DisplayText.Value(change.Property, change.OldValue)} -> {DisplayText.Value(change.Property, change.NewValue)} ({change.Application})");
        if (!result.RestartNeeded)
            return;
        var properties = string.Join(", ", result.Changes.Where(c => c.Application == ChangeApplication.RestartNeeded).Select(c => Show(c.Property)));
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

    bool ICmdletOutput.ShouldProcess(string target, string action)
    {
        try
        {
            return ShouldProcess(target, action);
        }
        catch (Exception e) when (e is System.Management.Automation.Host.HostException or PSInvalidOperationException or NotImplementedException)
        {
            // The host cannot prompt (pwsh -NonInteractive, a runspace without a UI): say how to go on.
            throw new ConfirmationNotPossibleException(target, action, e);
        }
    }
}
