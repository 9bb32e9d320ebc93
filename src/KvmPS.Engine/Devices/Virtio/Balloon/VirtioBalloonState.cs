using KvmPS.State;

namespace KvmPS.Devices.Virtio.Balloon;

/// <summary>
/// The balloon's sizes (target and actual, in 4 KiB pages), the stats buffer it holds (its descriptor head: the
/// driver gets it back when the device wants fresh statistics), the last statistics and the counters. The set of
/// inflated pages is not kept: inflated pages were discarded, so they are zero pages (holes) in the memory file.
/// </summary>
public sealed record VirtioBalloonState(
    uint TargetPages, uint ActualPages, bool DriverOk, bool ConfigDirty, bool StatsDue, ushort? HeldStatsHead,
    long InflatedPages, long DeflatedPages, long InvalidPfns, long DiscardedBytes, (string Name, ulong Value)[] Stats)
{
    public const ushort Version = 1;
    private const int MaxStats = 256;

    public void Write(StateWriter w)
    {
        w.WriteUInt32(TargetPages);
        w.WriteUInt32(ActualPages);
        w.WriteBool(DriverOk);
        w.WriteBool(ConfigDirty);
        w.WriteBool(StatsDue);
        w.WriteBool(HeldStatsHead.HasValue);
        w.WriteUInt16(HeldStatsHead ?? 0);
        w.WriteInt64(InflatedPages);
        w.WriteInt64(DeflatedPages);
        w.WriteInt64(InvalidPfns);
        w.WriteInt64(DiscardedBytes);
        w.WriteUInt16((ushort)Stats.Length);
        foreach (var (name, value) in Stats)
        {
            w.WriteString(name);
            w.WriteUInt64(value);
        }
    }

    public static VirtioBalloonState Read(StateReader r, ushort version)
    {
        DeviceState.EnsureVersion(r, version, Version);
        uint target = r.ReadUInt32(), actual = r.ReadUInt32();
        bool driverOk = r.ReadBool(), configDirty = r.ReadBool(), statsDue = r.ReadBool();
        bool held = r.ReadBool();
        ushort head = r.ReadUInt16();
        long inflated = r.ReadInt64(), deflated = r.ReadInt64(), invalid = r.ReadInt64(), discarded = r.ReadInt64();
        int count = r.ReadUInt16();
        if (count > MaxStats) throw r.Fail($"{count} statistics (at most {MaxStats})");
        var stats = new (string, ulong)[count];
        for (int i = 0; i < count; i++) stats[i] = (r.ReadString(64), r.ReadUInt64());
        r.EnsureEnd();
        if (held && head >= VirtioBalloon.QueueSize) throw r.Fail($"held stats buffer {head} is beyond the queue size {VirtioBalloon.QueueSize}");
        return new VirtioBalloonState(target, actual, driverOk, configDirty, statsDue, held ? head : null, inflated, deflated, invalid, discarded, stats);
    }
}
