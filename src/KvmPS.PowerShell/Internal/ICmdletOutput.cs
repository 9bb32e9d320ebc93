using KvmPS.Management.Lifecycle;

namespace KvmPS.PowerShell.Internal;

/// <summary>
/// Everything a KvmPS cmdlet sends to its caller: the cmdlet's own command runtime, or, for work that runs as
/// a job (-AsJob), one that writes into the job's streams. The same work code serves both.
/// </summary>
internal interface ICmdletOutput
{
    void WriteObject(object? value);
    void WriteError(KvmError error);
    void WriteWarning(string message);
    void WriteVerbose(string message);
    void WriteProgress(string activity, string status, int percentComplete, bool completed);

    /// <summary>-WhatIf / -Confirm: true if the action may go ahead.</summary>
    bool ShouldProcess(string target, string action);
}

internal static class CmdletOutputExtensions
{
    /// <summary>Management's progress reports as Write-Progress records, written on the reporting (pipeline) thread.</summary>
    public static IProgress<OperationProgress> Progress(this ICmdletOutput output) =>
        new SynchronousProgress(p => output.WriteProgress(p.Activity, p.Status, p.PercentComplete, p.Completed));
}
