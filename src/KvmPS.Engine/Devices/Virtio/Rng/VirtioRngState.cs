using KvmPS.State;

namespace KvmPS.Devices.Virtio.Rng;

/// <summary>virtio-rng keeps nothing but its counter: every request completes at once.</summary>
public sealed record VirtioRngState(ulong BytesServed)
{
    public const ushort Version = 1;

    public void Write(StateWriter w) => w.WriteUInt64(BytesServed);

    public static VirtioRngState Read(StateReader r, ushort version)
    {
        DeviceState.EnsureVersion(r, version, Version);
        var s = new VirtioRngState(r.ReadUInt64());
        r.EnsureEnd();
        return s;
    }
}
