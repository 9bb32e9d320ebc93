using System.Buffers.Binary;
using KvmPS.Devices.Display;
using KvmPS.Devices.Pci;
using KvmPS.State;
using KvmPS.Vm;

namespace KvmPS.Engine.Tests.Devices.Display;

/// <summary>A VRAM slot that records where it is mapped and hands out a dirty log the test sets.</summary>
internal sealed class FakeVramSlot : IVramSlot
{
    public readonly List<ulong?> Calls = new();
    public ulong? MappedAt;
    public ulong[]? NextLog;
    public void MapAt(ulong? guestAddress) { Calls.Add(guestAddress); MappedAt = guestAddress; }
    public bool TakeDirtyLog(Span<ulong> bitmap)
    {
        if (MappedAt is null) return false;
        bitmap.Clear();
        NextLog?.CopyTo(bitmap);
        NextLog = null;
        return true;
    }
}

/// <summary>The Bochs display on a PCI bus, driven through config space and its BARs as a guest driver would.</summary>
public sealed class BochsDisplayTests : IDisposable
{
    private readonly MmioBus _mmio = new();
    private readonly PciBus _bus;
    private readonly BochsDisplay _display;
    private readonly FakeVramSlot _slot = new();
    private const int Slot = 3;
    private readonly List<string> _log = new();

    public BochsDisplayTests()
    {
        _bus = new PciBus(_mmio, VirtioPciTransportTests.TestWindows, log: m => { lock (_log) _log.Add(m); });
        _display = new BochsDisplay(16 << 20, 1024, 768);
        _display.AttachSlot(_slot);
        _bus.AddDevice(Slot, _display);
    }

    public void Dispose() => _bus.Dispose();

    private ulong Mmio => _display.MmioBar.MappedAt!.Value;
    private ulong Fb => _display.FramebufferBar.MappedAt!.Value;

    private ushort ReadDispi(int index)
    {
        Span<byte> d = stackalloc byte[2];
        Assert.True(_mmio.Read(Mmio + BochsDisplay.DispiOffset + (ulong)index * 2, d));
        return BinaryPrimitives.ReadUInt16LittleEndian(d);
    }

    private void WriteDispi(int index, ushort value)
    {
        Span<byte> d = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(d, value);
        Assert.True(_mmio.Write(Mmio + BochsDisplay.DispiOffset + (ulong)index * 2, d));
    }

    /// <summary>What bochs.c's bochs_hw_setmode writes.</summary>
    private void SetMode(int width, int height, int bpp, ushort enable = DispiRegisters.Enabled | DispiRegisters.LfbEnabled)
    {
        WriteDispi(DispiRegisters.IndexEnable, 0);
        WriteDispi(DispiRegisters.IndexBpp, (ushort)bpp);
        WriteDispi(DispiRegisters.IndexXres, (ushort)width);
        WriteDispi(DispiRegisters.IndexYres, (ushort)height);
        WriteDispi(DispiRegisters.IndexBank, 0);
        WriteDispi(DispiRegisters.IndexVirtWidth, (ushort)width);
        WriteDispi(DispiRegisters.IndexVirtHeight, (ushort)height);
        WriteDispi(DispiRegisters.IndexXOffset, 0);
        WriteDispi(DispiRegisters.IndexYOffset, 0);
        WriteDispi(DispiRegisters.IndexEnable, enable);
    }

    private uint Config32(int reg)
    {
        Span<byte> d = stackalloc byte[4];
        _display.ConfigRead(reg, d);
        return BinaryPrimitives.ReadUInt32LittleEndian(d);
    }

    private void WriteConfig32(int reg, uint value)
    {
        Span<byte> d = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(d, value);
        _display.ConfigWrite(reg, d);
    }

    [Fact]
    public void IdentityAndBarsAreQemusBochsDisplay()
    {
        Assert.Equal(0x11111234u, Config32(0x00));
        Assert.Equal(0x038000u, Config32(0x08) >> 8);          // display, other (SeaBIOS: try_setup_display_other)
        Assert.Equal(0x8u, Config32(0x10) & 0xF);               // BAR 0: memory, 32-bit, prefetchable
        Assert.Equal(0x0u, Config32(0x18) & 0xF);               // BAR 2: memory, 32-bit
        WriteConfig32(0x10, 0xFFFF_FFFF);
        Assert.Equal(~(16u << 20) + 1, Config32(0x10) & ~0xFu); // sizes as 16 MiB
        WriteConfig32(0x18, 0xFFFF_FFFF);
        Assert.Equal(0xFFFF_F000u, Config32(0x18) & ~0xFu);     // 4 KiB
    }

    [Fact]
    public void DispiRegistersReadAndWriteAsBochsVbe()
    {
        Assert.Equal(DispiRegisters.Id5, ReadDispi(DispiRegisters.IndexId));
        Assert.Equal(256, ReadDispi(DispiRegisters.IndexVideoMemory64K)); // 16 MiB in 64 KiB units
        WriteDispi(DispiRegisters.IndexId, DispiRegisters.Id0);
        Assert.Equal(DispiRegisters.Id0, ReadDispi(DispiRegisters.IndexId));
        WriteDispi(DispiRegisters.IndexId, 0x1234);                       // not an ID: kept
        Assert.Equal(DispiRegisters.Id0, ReadDispi(DispiRegisters.IndexId));
        WriteDispi(DispiRegisters.IndexVideoMemory64K, 1);                // read-only
        Assert.Equal(256, ReadDispi(DispiRegisters.IndexVideoMemory64K));

        WriteDispi(DispiRegisters.IndexEnable, DispiRegisters.GetCaps);   // capabilities: the maximums
        Assert.Equal(DispiRegisters.MaxXres, ReadDispi(DispiRegisters.IndexXres));
        Assert.Equal(DispiRegisters.MaxYres, ReadDispi(DispiRegisters.IndexYres));
        Assert.Equal(32, ReadDispi(DispiRegisters.IndexBpp));
        Assert.True(_display.Mode.IsBlank);

        SetMode(800, 600, 32);
        Assert.Equal(new FramebufferMode(800, 600, 32, 3200, 0), _display.Mode);
        Assert.Equal(800, ReadDispi(DispiRegisters.IndexXres));
        // Panning as bochs_hw_setbase does: a virtual height of two screens, then the second one shown.
        WriteDispi(DispiRegisters.IndexVirtHeight, 1200);
        WriteDispi(DispiRegisters.IndexYOffset, 600);
        Assert.Equal(new FramebufferMode(800, 600, 32, 3200, 600L * 3200), _display.Mode);
        WriteDispi(DispiRegisters.IndexEnable, 0);
        Assert.True(_display.Mode.IsBlank);
        var reply = _display.StateReply();
        Assert.Equal("00:03.0", reply.Pci);
        Assert.False(reply.Enabled);
        Assert.Null(reply.VncUnixPath);
        _display.VncStatus = () => new DisplayVncStatus("/run/x.vnc", null, true, 2);
        SetMode(640, 480, 16);
        reply = _display.StateReply();
        Assert.True(reply.Enabled);
        Assert.Equal((640, 480, 16), (reply.WidthPixels, reply.HeightPixels, reply.BitsPerPixel));
        Assert.Equal(("/run/x.vnc", true, 2), (reply.VncUnixPath, reply.VncPasswordRequired, reply.VncClients));
    }

    [Fact]
    public void ImpossibleModesAreRefusedOrClampedInsideVram()
    {
        SetMode(1024, 768, 32);
        WriteDispi(DispiRegisters.IndexXres, 1001);                       // not a multiple of 8: refused
        Assert.Equal(1024, ReadDispi(DispiRegisters.IndexXres));
        WriteDispi(DispiRegisters.IndexBpp, 7);                           // no such depth: refused
        Assert.Equal(32, ReadDispi(DispiRegisters.IndexBpp));
        WriteDispi(DispiRegisters.IndexVirtWidth, 100);                   // narrower than the screen: widened
        Assert.Equal(1024, ReadDispi(DispiRegisters.IndexVirtWidth));
        WriteDispi(DispiRegisters.IndexXOffset, 60000);                   // beyond the virtual screen: clamped
        Assert.Equal(0, ReadDispi(DispiRegisters.IndexXOffset));
        SetMode(8000, 8000, 32);                                          // 256 MB: does not fit 16 MiB
        var mode = _display.Mode;
        Assert.True((long)mode.StrideBytes * mode.Height + mode.OffsetBytes <= 16 << 20, $"{mode} overflows VRAM");
        SetMode(0, 0, 32);                                                // zero: the smallest mode
        Assert.False(_display.Mode.IsBlank);

        // Random garbage through every register never throws and never yields a mode outside VRAM.
        var random = new Random(16);
        Span<uint> pixels = stackalloc uint[64];
        for (int i = 0; i < 20_000; i++)
        {
            WriteDispi(random.Next(0, 16), (ushort)random.Next(0, 65536));
            var m = _display.Mode;
            if (m.IsBlank) continue;
            long last = m.OffsetBytes + (long)(m.Height - 1) * m.StrideBytes + (long)m.Width * DispiRegisters.BytesPerPixel(m.BitsPerPixel);
            Assert.True(last <= 16 << 20, $"{m} ends at {last}, beyond VRAM");
            Assert.True(m.StrideBytes >= m.Width * DispiRegisters.BytesPerPixel(m.BitsPerPixel));
            _display.CopyPixels(m, m.Width - 4, m.Height - 4, 8, 8, pixels);
        }
    }

    [Fact]
    public void AnyAccessToTheRegisterBarIsServedWithoutAFault()
    {
        var random = new Random(2);
        var buffer = new byte[8];
        for (int i = 0; i < 50_000; i++)
        {
            ulong offset = (ulong)random.Next(0, BochsDisplay.MmioBarSize);
            int length = new[] { 1, 2, 4, 8 }[random.Next(4)];
            if (offset + (ulong)length > BochsDisplay.MmioBarSize) continue;
            var data = buffer.AsSpan(0, length);
            if (random.Next(2) == 0) _mmio.Read(Mmio + offset, data);
            else { random.NextBytes(data); _mmio.Write(Mmio + offset, data); }
        }
        var m = _display.Mode;
        Assert.True(m.IsBlank || m.OffsetBytes + (long)(m.Height - 1) * m.StrideBytes + m.Width * DispiRegisters.BytesPerPixel(m.BitsPerPixel) <= 16 << 20);
        lock (_log) Assert.DoesNotContain(_log, l => l.Contains("failed"));  // no access ended in an exception
        lock (_log) Assert.Contains(_log, l => l.Contains("(logged once)")); // refusals were reported
        lock (_log) Assert.True(_log.Count(l => l.Contains("XRES")) <= 1, string.Join("\n", _log));
    }

    [Fact]
    public void EdidIsAValidBlockWithThePreferredMode()
    {
        var edid = new byte[128];
        Assert.True(_mmio.Read(Mmio, edid));
        Assert.Equal(new byte[] { 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0 }, edid[..8]);
        Assert.Equal(0, edid.Sum(b => b) % 256);
        Assert.Equal((1, 4), (edid[18], edid[19]));
        Assert.Equal((1024, 768), Edid.PreferredMode(edid));
        Assert.Equal(0x1E, edid[54 + 17]);
        Assert.Contains("KvmPS", System.Text.Encoding.ASCII.GetString(edid, 72 + 5, 13));
        foreach (var (w, h) in new[] { (640, 480), (1920, 1080), (2560, 1600), (4095, 4095), (320, 200) })
        {
            var e = Edid.Build(w, h);
            Assert.Equal(0, e.Sum(b => b) % 256);
            Assert.Equal((w, h), Edid.PreferredMode(e));
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => Edid.Build(4096, 768));
    }

    [Fact]
    public void QemuExtendedRegistersSwitchEndianness()
    {
        var q = new byte[8];
        Assert.True(_mmio.Read(Mmio + BochsDisplay.QextOffset, q));
        Assert.Equal(8u, BinaryPrimitives.ReadUInt32LittleEndian(q));
        Assert.Equal(BochsDisplay.LittleEndianMagic, BinaryPrimitives.ReadUInt32LittleEndian(q.AsSpan(4)));
        SetMode(16, 1, 32);
        _mmio.Write(Fb, [0x11, 0x22, 0x33, 0x44]);
        var px = new uint[1];
        _display.CopyPixels(_display.Mode, 0, 0, 1, 1, px);
        Assert.Equal(0x332211u, px[0]);
        _mmio.Write(Mmio + BochsDisplay.QextOffset + 4, BitConverter.GetBytes(BochsDisplay.BigEndianMagic));
        Assert.True(_display.BigEndianFramebuffer);
        _display.CopyPixels(_display.Mode, 0, 0, 1, 1, px);
        Assert.Equal(0x223344u, px[0]);
        _mmio.Write(Mmio + BochsDisplay.QextOffset + 4, BitConverter.GetBytes(0x12345678u)); // neither: ignored
        Assert.True(_display.BigEndianFramebuffer);
    }

    [Fact]
    public void WideRowsOf32BitsCopyStraightWithTheUnusedByteCleared()
    {
        SetMode(104, 3, 32);
        var row = new byte[104 * 4];
        for (int i = 0; i < 104; i++) { row[4 * i] = (byte)i; row[4 * i + 1] = (byte)(i * 3); row[4 * i + 2] = (byte)(255 - i); row[4 * i + 3] = 0xFF; }
        for (int i = 0; i < 104; i++) _mmio.Write(Fb + 104 * 4 + (ulong)(4 * i), row.AsSpan(4 * i, 4)); // row 1
        var px = new uint[99 * 2];
        _display.CopyPixels(_display.Mode, 5, 1, 99, 2, px); // off the right edge by 4, row 2 all black
        for (int i = 0; i < 99; i++)
        {
            int x = 5 + i;
            uint expect = x < 104 ? (uint)((255 - x) << 16 | (byte)(x * 3) << 8 | x) : 0;
            Assert.Equal(expect, px[i]);
            Assert.Equal(0u, px[99 + i]);
        }
    }

    [Theory]
    [InlineData(32, new byte[] { 0x30, 0x20, 0x10, 0x00 }, 0x102030u)]
    [InlineData(32, new byte[] { 0x30, 0x20, 0x10, 0xAB }, 0x102030u)]  // the unused byte never shows
    [InlineData(24, new byte[] { 0x30, 0x20, 0x10 }, 0x102030u)]
    [InlineData(16, new byte[] { 0x1F, 0xF8 }, 0xFF00FFu)]   // r=31 g=0 b=31
    [InlineData(16, new byte[] { 0xE0, 0x07 }, 0x00FF00u)]   // g=63
    [InlineData(15, new byte[] { 0x00, 0x7C }, 0xFF0000u)]   // r=31
    [InlineData(15, new byte[] { 0x10, 0x42 }, 0x848484u)]   // r=g=b=16
    [InlineData(8, new byte[] { 0x80 }, 0x808080u)]          // no DAC: grey levels
    public void PixelsConvertPerDepth(int bpp, byte[] pixel, uint rgb)
    {
        SetMode(8, 2, bpp);
        int bytes = DispiRegisters.BytesPerPixel(bpp);
        // Pixel (3, 1): row 1 starts at stride = 8 × bytes.
        _mmio.Write(Fb + (ulong)(8 * bytes + 3 * bytes), pixel);
        var px = new uint[4 * 2];
        _display.CopyPixels(_display.Mode, 2, 0, 4, 2, px);
        Assert.Equal(new uint[] { 0, 0, 0, 0, 0, rgb, 0, 0 }, px);
        // Clipping: a rectangle hanging off the mode reads black outside it.
        var outside = new uint[4];
        _display.CopyPixels(_display.Mode, 6, 1, 4, 1, outside);
        Assert.Equal(new uint[] { 0, 0, 0, 0 }, outside);
        _display.CopyPixels(_display.Mode, -1, 1, 1, 1, outside);
        Assert.Equal(0u, outside[0]);
    }

    [Fact]
    public void TwoViewersSeeTheRowsChangedSinceTheirOwnGeneration()
    {
        SetMode(1024, 768, 32);                    // 4096 bytes per row: one page per row
        long first = _display.Refresh();
        var rows = new bool[768];
        _display.ChangedRows(0, _display.Mode, rows);
        Assert.All(rows, r => Assert.True(r));     // since 0: everything
        long a = first, b = first;                 // two viewers, both up to date
        _display.ChangedRows(a, _display.Mode, rows);
        Assert.DoesNotContain(true, rows);

        _mmio.Write(Fb + 10 * 4096 + 8, [1, 2, 3, 4]);  // through MMIO: row 10
        long g1 = _display.Refresh();
        Assert.True(g1 > first);
        _display.ChangedRows(a, _display.Mode, rows);
        Assert.Equal([10], Changed(rows));
        a = g1;                                    // viewer A sent its update; B did not

        _slot.NextLog = new ulong[(16 << 20) / 4096 / 64];
        _slot.NextLog[0] = 1UL << 20;              // the guest wrote row 20 natively (KVM's dirty log)
        long g2 = _display.Refresh();
        _display.ChangedRows(a, _display.Mode, rows);
        Assert.Equal([20], Changed(rows));
        _display.ChangedRows(b, _display.Mode, rows);
        Assert.Equal([10, 20], Changed(rows));
        Assert.Equal(g2, _display.Refresh());      // nothing new: same generation

        // A mode change marks every row for both.
        SetMode(800, 600, 32, DispiRegisters.Enabled | DispiRegisters.NoClearMem);
        _display.Refresh();
        var rows600 = new bool[600];
        _display.ChangedRows(g2, _display.Mode, rows600);
        Assert.All(rows600, r => Assert.True(r));
        // A viewer still holding the old mode is told to redraw all of it.
        _display.ChangedRows(g2, new FramebufferMode(1024, 768, 32, 4096, 0), rows);
        Assert.All(rows, r => Assert.True(r));
    }

    private static int[] Changed(bool[] rows) => rows.Select((c, i) => (c, i)).Where(t => t.c).Select(t => t.i).ToArray();

    [Fact]
    public void TheVramSlotFollowsBarZero()
    {
        ulong assigned = Fb;
        Assert.Equal(assigned, _slot.MappedAt);
        ulong moved = 0xD000_0000;
        WriteConfig32(0x10, (uint)moved);
        Assert.Equal(moved, _slot.MappedAt);
        Assert.Equal(moved, _display.FramebufferBar.MappedAt);
        Span<byte> cmd = stackalloc byte[2];
        _display.ConfigRead(0x04, cmd);
        _display.ConfigWrite(0x04, [(byte)(cmd[0] & ~PciDevice.CommandMemory), cmd[1]]); // memory decoding off
        Assert.Null(_slot.MappedAt);
        _display.ConfigWrite(0x04, cmd);                                                   // on again
        Assert.Equal(moved, _slot.MappedAt);
        Assert.Equal(new ulong?[] { assigned, null, moved, null, moved }, _slot.Calls);
        _bus.RemoveDevice(Slot);                                                           // unplugged: no slot left
        Assert.Null(_slot.MappedAt);
        _bus.AddDevice(Slot, new BochsDisplay(4 << 20, 1024, 768)); // keeps Dispose working
    }

    [Fact]
    public void StateKeepsRegistersAndPicture()
    {
        SetMode(640, 480, 32);
        WriteDispi(DispiRegisters.IndexYOffset, 0);
        var stripe = Enumerable.Range(0, 4096).Select(i => (byte)(i * 7)).ToArray();
        _mmio.Write(Fb + 5 * 4096, stripe);
        _mmio.Write(Fb + (16 << 20) - 4, [9, 9, 9, 9]);
        var parts = _display.PersistentParts().ToArray();
        Assert.Equal(["pci/00:03.0", "pci/00:03.0/display"], parts.Select(p => p.StateName));
        var writer = new StateWriter();
        parts[1].SaveState(writer);
        byte[] record = writer.ToArray();
        Assert.True(record.Length < 3 * 4096, $"a mostly blank framebuffer takes {record.Length} bytes"); // two pages and the bitmap

        using var bus = new PciBus(new MmioBus(), VirtioPciTransportTests.TestWindows);
        var restored = new BochsDisplay(16 << 20, 1024, 768);
        restored.AttachSlot(new FakeVramSlot());
        bus.AddDevice(Slot, restored);
        restored.PersistentParts().ElementAt(1).RestoreState(new StateReader(record, "pci/00:03.0/display"), 1);
        Assert.Equal(_display.Mode, restored.Mode);
        Assert.True(restored.Vram.Bytes.SequenceEqual(_display.Vram.Bytes));
        long g = restored.Refresh();
        var rows = new bool[480];
        restored.ChangedRows(g - 1, restored.Mode, rows);
        Assert.All(rows, r => Assert.True(r)); // a restored picture is new to every viewer

        var smaller = new BochsDisplay(4 << 20, 1024, 768);
        try
        {
            var e = Assert.Throws<StateFormatException>(() => smaller.PersistentParts().ElementAt(1).RestoreState(new StateReader(record, "x"), 1));
            Assert.Contains("vram_bytes", e.Message);
        }
        finally { smaller.Dispose(); }
    }
}
