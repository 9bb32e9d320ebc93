using KvmPS.State;

namespace KvmPS.Devices.Display;

/// <summary>
/// "pci/00:SS.0/display", version 1: the DISPI registers (11 × u16), the framebuffer endianness (bool), the VRAM size
/// (u64, checked: it must be the device's), then the VRAM itself: a bitmap of the pages that hold anything but zeros
/// (u64 words) followed by those pages verbatim. The picture travels whole in the record (snapshots and the final
/// state of a migration); the page bitmap keeps a mostly blank framebuffer small.
/// </summary>
internal sealed class DisplayStatePart(BochsDisplay display) : IPersistent
{
    public const ushort Version = 1;
    public string StateName => display.StateName + "/display";
    public ushort StateVersion => Version;

    public void SaveState(StateWriter writer) => display.SaveDisplayState(writer);

    public void RestoreState(StateReader reader, ushort version)
    {
        DeviceState.EnsureVersion(reader, version, Version);
        display.RestoreDisplayState(reader);
        reader.EnsureEnd();
    }
}

public sealed partial class BochsDisplay
{
    internal void SaveDisplayState(StateWriter w)
    {
        lock (SyncRoot)
        {
            foreach (var r in _dispi.Save()) w.WriteUInt16(r);
            w.WriteBool(_bigEndian);
            var vram = Vram.Bytes;
            w.WriteUInt64((ulong)vram.Length);
            var used = new ulong[(Vram.PageCount + 63) / 64];
            for (int p = 0; p < Vram.PageCount; p++)
                if (vram.Slice(p * Vram.PageSize, Vram.PageSize).IndexOfAnyExcept((byte)0) >= 0) used[p >> 6] |= 1UL << (p & 63);
            foreach (var word in used) w.WriteUInt64(word);
            for (int p = 0; p < Vram.PageCount; p++)
                if ((used[p >> 6] & 1UL << (p & 63)) != 0) w.WriteFixed(vram.Slice(p * Vram.PageSize, Vram.PageSize));
        }
    }

    internal void RestoreDisplayState(StateReader r)
    {
        var regs = new ushort[DispiRegisters.Count];
        for (int i = 0; i < regs.Length; i++) regs[i] = r.ReadUInt16();
        bool big = r.ReadBool();
        ulong size = r.ReadUInt64();
        if (size != (ulong)Vram.SizeBytes) throw r.Fail($"the VRAM is {size} bytes, {Name} has {Vram.SizeBytes} (vram_bytes differs)");
        var used = new ulong[(Vram.PageCount + 63) / 64];
        for (int i = 0; i < used.Length; i++) used[i] = r.ReadUInt64();
        lock (SyncRoot)
        {
            var vram = Vram.Bytes;
            for (int p = 0; p < Vram.PageCount; p++)
            {
                var page = vram.Slice(p * Vram.PageSize, Vram.PageSize);
                if ((used[p >> 6] & 1UL << (p & 63)) != 0) r.ReadFixed(page);
                else if (page.IndexOfAnyExcept((byte)0) >= 0) page.Clear(); // untouched pages stay unallocated
            }
            _dispi.Load(regs);
            _bigEndian = big;
        }
        MarkAllSoftDirty();
    }
}
