using KvmPS.State;

namespace KvmPS.Devices.Virtio.Net;

/// <summary>
/// virtio-net's own state: the tap it was attached to and the MAC and MTU it presented (checked on restore; the
/// tap is re-opened by name from the configuration), a received frame still waiting for receive buffers, and the
/// receive chains already taken from the ring for it (their buffers, so that they are used, not lost, after restore).
/// </summary>
public sealed record VirtioNetState(string TapName, byte[] Mac, ushort Mtu, byte[] PendingPacket, VirtioNetState.HeldChain[] HeldChains)
{
    public const ushort Version = 1;

    public readonly record struct HeldChain(ushort Head, VirtqBuffer[] Buffers);

    public void Write(StateWriter w)
    {
        w.WriteString(TapName);
        w.WriteFixed(Mac);
        w.WriteUInt16(Mtu);
        w.WriteBytes(PendingPacket);
        w.WriteUInt16((ushort)HeldChains.Length);
        foreach (var c in HeldChains)
        {
            w.WriteUInt16(c.Head);
            w.WriteUInt16((ushort)c.Buffers.Length);
            foreach (var b in c.Buffers)
            {
                w.WriteUInt64(b.Address);
                w.WriteUInt32(b.Length);
                w.WriteBool(b.DeviceWritable);
            }
        }
    }

    public static VirtioNetState Read(StateReader r, ushort version)
    {
        DeviceState.EnsureVersion(r, version, Version);
        string tap = r.ReadString(64);
        var mac = new byte[6];
        r.ReadFixed(mac);
        ushort mtu = r.ReadUInt16();
        var pending = r.ReadBytes(VirtioNet.MaxPacket);
        int chains = r.ReadUInt16();
        if (chains > VirtioNet.QueueSize) throw r.Fail($"{chains} held receive chains (the queue holds {VirtioNet.QueueSize})");
        var held = new HeldChain[chains];
        for (int i = 0; i < chains; i++)
        {
            ushort head = r.ReadUInt16();
            int count = r.ReadUInt16();
            if (head >= VirtioNet.QueueSize || count == 0 || count > VirtQueue.MaxSize)
                throw r.Fail($"held receive chain {i}: head {head} with {count} buffers");
            var buffers = new VirtqBuffer[count];
            for (int k = 0; k < count; k++)
            {
                buffers[k] = new VirtqBuffer(r.ReadUInt64(), r.ReadUInt32(), r.ReadBool());
                if (!buffers[k].DeviceWritable) throw r.Fail($"held receive chain {head} has a device-readable buffer");
            }
            held[i] = new HeldChain(head, buffers);
        }
        r.EnsureEnd();
        if (pending.Length is > 0 and < VirtioNet.HeaderSize + 14) throw r.Fail($"a pending frame of {pending.Length} bytes is shorter than a header and an Ethernet header");
        return new VirtioNetState(tap, mac, mtu, pending, held);
    }
}
