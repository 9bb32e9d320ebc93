using KvmPS.Devices.Virtio;
using KvmPS.Vm;

namespace KvmPS.Engine.Tests.Devices;

/// <summary>A driver-side view of a split virtqueue in a <see cref="GuestMemory"/> (no KVM needed).</summary>
internal sealed class TestRing
{
    public readonly GuestMemory Mem;
    public readonly ushort Size;
    public readonly ulong Desc, Avail, Used;
    private ushort _availIdx;

    public TestRing(GuestMemory mem, ushort size, ulong baseAddress = 0x10000)
    {
        Mem = mem;
        Size = size;
        Desc = baseAddress;
        Avail = Desc + 16UL * size;
        Used = (Avail + 6 + 2UL * size + 3) & ~3UL;
    }

    public VirtQueue Create(bool eventIdx = false, bool indirect = false)
        => VirtQueue.TryCreate(Mem, Size, Desc, Avail, Used, eventIdx, indirect, out var e) ?? throw new InvalidOperationException(e);

    public void SetDesc(int i, ulong addr, uint len, ushort flags, ushort next = 0, ulong? table = null)
    {
        ulong at = (table ?? Desc) + 16UL * (uint)i;
        Mem.WriteUInt64(at, addr);
        Mem.WriteUInt32(at + 8, len);
        Mem.WriteUInt16(at + 12, flags);
        Mem.WriteUInt16(at + 14, next);
    }

    public void Offer(ushort head)
    {
        Mem.WriteUInt16(Avail + 4 + 2UL * (ushort)(_availIdx % Size), head);
        _availIdx++;
        Mem.WriteUInt16(Avail + 2, _availIdx);
    }

    public void SetAvailIdx(ushort idx) { _availIdx = idx; Mem.WriteUInt16(Avail + 2, idx); }
    public ushort UsedIdx => Mem.ReadUInt16(Used + 2);
    public (uint Id, uint Len) UsedElem(int i) => (Mem.ReadUInt32(Used + 4 + 8UL * (uint)(i % Size)), Mem.ReadUInt32(Used + 8 + 8UL * (uint)(i % Size)));
    public void SetUsedEvent(ushort v) => Mem.WriteUInt16(Avail + 4 + 2UL * Size, v);
    public ushort AvailEvent => Mem.ReadUInt16(Used + 4 + 8UL * Size);
    public void SetAvailFlags(ushort f) => Mem.WriteUInt16(Avail, f);
}
