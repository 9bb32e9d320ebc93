using KvmPS.Vm;

namespace KvmPS.State;

/// <summary>
/// The snapshot a diff is taken on: the last snapshot this VMM process wrote, or the one it was restored from, with
/// its state.bin CRC-64 (recorded in the diff's pages.bin, so a restore can tell the parent was replaced), and the
/// pages dirtied since then that were harvested but are not in any snapshot yet (a diff that failed to write keeps
/// them here for the next one).
/// </summary>
public sealed class SnapshotBaseline(string directory, ulong stateCrc, ulong pageCount)
{
    public string Directory { get; } = directory;
    public ulong StateCrc { get; } = stateCrc;
    public GuestPageBitmap PendingPages { get; } = new(pageCount);
}
