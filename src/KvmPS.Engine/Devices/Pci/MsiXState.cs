using KvmPS.State;

namespace KvmPS.Devices.Pci;

/// <summary>MSI-X state of a function: the vector table, the pending-bit array and the message-control bits.</summary>
public sealed record MsiXState(int VectorCount, byte[] Table, ulong[] Pending, bool Enabled, bool FunctionMasked)
{
    public void Write(StateWriter w)
    {
        w.WriteUInt16((ushort)VectorCount);
        w.WriteBytes(Table);
        w.WriteUInt16((ushort)Pending.Length);
        foreach (ulong p in Pending) w.WriteUInt64(p);
        w.WriteBool(Enabled);
        w.WriteBool(FunctionMasked);
    }

    public static MsiXState Read(StateReader r)
    {
        int vectors = r.ReadUInt16();
        var table = r.ReadBytes(2048 * MsiXTable.EntrySize);
        int words = r.ReadUInt16();
        if (words > 32) throw r.Fail($"an MSI-X pending-bit array of {words} words (at most 32)");
        var pending = new ulong[words];
        for (int i = 0; i < words; i++) pending[i] = r.ReadUInt64();
        return new MsiXState(vectors, table, pending, r.ReadBool(), r.ReadBool());
    }
}
