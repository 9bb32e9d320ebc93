using KvmPS.State;

namespace KvmPS.Devices;

/// <summary>Checks shared by every device's state record.</summary>
public static class DeviceState
{
    /// <summary>Refuses a record version this build cannot read (0, or newer than <paramref name="current"/>).</summary>
    public static void EnsureVersion(StateReader reader, ushort version, ushort current)
    {
        if (version == 0 || version > current)
            throw reader.Fail($"version {version} is not supported (this build reads versions 1 to {current})");
    }

    /// <summary>Restores a part from bytes and checks that nothing is left over: the one way every record is read.</summary>
    public static void Restore(IPersistent part, ReadOnlyMemory<byte> data, ushort version)
    {
        var reader = new StateReader(data, part.StateName);
        part.RestoreState(reader, version);
        reader.EnsureEnd();
    }

    /// <summary>The record bytes of <paramref name="part"/>.</summary>
    public static byte[] Save(IPersistent part)
    {
        var writer = new StateWriter();
        part.SaveState(writer);
        return writer.ToArray();
    }
}

/// <summary>A persistent part under another name (a virtio device's record is named after its PCI slot).</summary>
public sealed class NamedPart(string stateName, IPersistent inner) : IPersistent
{
    public string StateName { get; } = stateName;
    public ushort StateVersion => inner.StateVersion;
    public IPersistent Inner => inner;
    public void SaveState(StateWriter writer) => inner.SaveState(writer);
    public void RestoreState(StateReader reader, ushort version) => inner.RestoreState(reader, version);
}
