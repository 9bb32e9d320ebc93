using KvmPS.Devices;
using KvmPS.State;

namespace KvmPS.Engine.Tests.Devices.State;

/// <summary>The checks every persistent part must pass: an exact round trip, and refusal of damaged records.</summary>
internal static class StateAssert
{
    /// <summary>Saves <paramref name="source"/>, restores the bytes into <paramref name="fresh"/> and saves it again: the bytes must match.</summary>
    public static byte[] RoundTrips(IPersistent source, IPersistent fresh)
    {
        Assert.Equal(source.StateName, fresh.StateName);
        var saved = DeviceState.Save(source);
        DeviceState.Restore(fresh, saved, source.StateVersion);
        Assert.Equal(saved, DeviceState.Save(fresh));
        return saved;
    }

    /// <summary>
    /// Truncated records (every length short of the whole), one extra byte, and a newer version are refused with a
    /// <see cref="StateFormatException"/> naming the record; each attempt gets a freshly built part.
    /// </summary>
    public static void RejectsDamagedRecords(IPersistent source, Func<IPersistent> fresh)
    {
        var saved = DeviceState.Save(source);
        var cuts = new SortedSet<int> { 0, 1, saved.Length / 2, saved.Length - 1 };
        if (saved.Length <= 64) for (int n = 0; n < saved.Length; n++) cuts.Add(n);
        foreach (int n in cuts.Where(n => n >= 0 && n < saved.Length))
            Refused(fresh(), saved.AsMemory(0, n), source.StateVersion, $"truncated to {n} of {saved.Length} bytes");
        Refused(fresh(), saved.Concat(new byte[] { 0 }).ToArray(), source.StateVersion, "one extra byte");
        Refused(fresh(), saved, (ushort)(source.StateVersion + 1), "a newer version");
        Refused(fresh(), saved, 0, "version 0");
    }

    private static void Refused(IPersistent part, ReadOnlyMemory<byte> data, ushort version, string what)
    {
        var e = Record.Exception(() => DeviceState.Restore(part, data, version));
        var sfe = Assert.IsType<StateFormatException>(e, exactMatch: true);
        Assert.True(sfe.RecordName == part.StateName, $"{what}: the error names '{sfe.RecordName}', not '{part.StateName}'");
        (part as IDisposable)?.Dispose();
    }
}
