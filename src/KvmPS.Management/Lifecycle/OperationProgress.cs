namespace KvmPS.Management.Lifecycle;

/// <summary>Where an <see cref="OperationProgress"/> report stands in its operation.</summary>
public enum ProgressStage
{
    /// <summary>Work in progress (see <see cref="OperationProgress.PercentComplete"/>).</summary>
    Running,

    /// <summary>A step of a stepwise operation starts (<see cref="OperationProgress.Status"/> describes it).</summary>
    StepStarted,

    /// <summary>The step finished (<see cref="OperationProgress.Status"/> is its result).</summary>
    StepDone,

    /// <summary>The step failed (<see cref="OperationProgress.Status"/> says why).</summary>
    StepFailed,
}

/// <summary>
/// One progress report of a long operation — creating a VM and its disk images, starting a VM, applying a desired
/// state — the same type for every operation, so front ends map it once (Write-Progress, CLI progress lines).
/// </summary>
/// <param name="Activity">What is being done, naming the object (<c>Creating VM 'web'</c>).</param>
/// <param name="Status">The current detail: the step's description or result.</param>
/// <param name="PercentComplete">0–100 for the whole operation, or -1 if unknown.</param>
public sealed record OperationProgress(string Activity, string Status, int PercentComplete = -1)
{
    public ProgressStage Stage { get; init; } = ProgressStage.Running;

    /// <summary>The VM this report is about, if one.</summary>
    public string? VmName { get; init; }

    /// <summary>1-based step number in a stepwise operation; 0 if the operation has no steps.</summary>
    public int Step { get; init; }

    /// <summary>Number of steps in a stepwise operation; 0 if it has none.</summary>
    public int StepCount { get; init; }

    /// <summary>The last report of the operation.</summary>
    public bool Completed { get; init; }
}

/// <summary>
/// Reports on the reporting thread, in order, before <see cref="Report"/> returns. <see cref="Progress{T}"/> posts to
/// the thread pool instead, which is wrong for a PowerShell pipeline (output only from the pipeline thread) and
/// reorders CLI lines.
/// </summary>
public sealed class SynchronousProgress(Action<OperationProgress> report) : IProgress<OperationProgress>
{
    public void Report(OperationProgress value) => report(value);
}
