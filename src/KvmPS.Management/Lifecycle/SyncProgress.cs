namespace KvmPS.Management.Lifecycle;

/// <summary>
/// An <see cref="IProgress{T}"/> that reports on the calling thread. <see cref="Progress{T}"/> posts to the thread
/// pool, which is outside a PowerShell pipeline (WriteProgress from there fails) and reorders a CLI's lines.
/// The one such type for every front end.
/// </summary>
public sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
