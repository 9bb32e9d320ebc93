using System.Runtime;

namespace KvmPS.Migration;

/// <summary>
/// The stop-and-copy window of a migration, kept free of garbage collections: a blocking collection there is guest
/// downtime (a few milliseconds, longer than the whole hand-over of an idle guest). Entering may collect first, so it is
/// entered before the vCPUs stop. When the budget runs out the runtime collects anyway and the window just ends.
/// </summary>
internal readonly struct NoGcWindow : IDisposable
{
    /// <summary>Covers the state records, the frames and the last dirty bitmaps of a large VM.</summary>
    public const long BudgetBytes = 32L * 1024 * 1024;

    private readonly bool _entered;

    private NoGcWindow(bool entered) => _entered = entered;

    public static NoGcWindow Enter(long budgetBytes = BudgetBytes)
    {
        try { return new NoGcWindow(GC.TryStartNoGCRegion(budgetBytes)); }
        // Already in one (a nested window), or a budget this runtime cannot give: run without the guarantee.
        catch (InvalidOperationException) { return default; }
        catch (ArgumentOutOfRangeException) { return default; }
    }

    public void Dispose()
    {
        if (!_entered || GCSettings.LatencyMode != GCLatencyMode.NoGCRegion) return;
        try { GC.EndNoGCRegion(); }
        catch (InvalidOperationException) { } // the budget ran out and a collection ended the region meanwhile
    }
}
