using System.Buffers.Binary;
using System.Text.Json;
using KvmPS.Contract;
using KvmPS.Devices.Config;
using KvmPS.Devices.Pci;
using KvmPS.State;

namespace KvmPS.Devices.Display;

/// <summary>What the VNC server reports about itself in <c>display.get</c> (set by the VNC side through <see cref="BochsDisplay.VncStatus"/>).</summary>
public sealed record DisplayVncStatus(string? UnixPath, string? Tcp, bool PasswordRequired, int Clients);

/// <summary>
/// QEMU's bochs-display as guests see it (docs/display.md "Display device"): PCI 1234:1111, class 0x038000 (display,
/// other), BAR 0 the linear framebuffer (prefetchable, 32-bit; a KVM memory slot over host memory with dirty logging,
/// following the BAR), BAR 2 4 KiB of MMIO: the EDID block at 0x000, the DISPI registers at 0x500 (index × 2), QEMU's
/// extended registers at 0x600 (size, framebuffer endianness). No legacy VGA: no ports, no 0xA0000 window, no DAC.
/// </summary>
public sealed partial class BochsDisplay : PciDevice, IDeviceControl
{
    public const ushort Vendor = 0x1234, Device = 0x1111;
    public const uint ClassDisplayOther = 0x038000;
    public const int MmioBarSize = 4096;
    public const int EdidOffset = 0x000, VgaOffset = 0x400, DispiOffset = 0x500, QextOffset = 0x600;
    public const uint QextSize = 8, LittleEndianMagic = 0x1e1e1e1e, BigEndianMagic = 0xbebebebe;
    public const long MinVramBytes = 4L << 20, MaxVramBytes = 256L << 20, DefaultVramBytes = 16L << 20;

    private readonly byte[] _edid;
    private readonly DispiRegisters _dispi;
    private bool _bigEndian;
    private IVramSlot? _slot;

    public Vram Vram { get; }
    public PciBar FramebufferBar { get; }
    public PciBar MmioBar { get; }
    public int PreferredWidth { get; }
    public int PreferredHeight { get; }
    public override string Name => "bochs-display";

    /// <summary>The VNC server's status for <c>display.get</c>; null: no VNC server (its fields read null/0).</summary>
    public Func<DisplayVncStatus?>? VncStatus { get; set; }

    public BochsDisplay(long vramBytes, int preferredWidth, int preferredHeight)
        : base(Vendor, Device, ClassDisplayOther, revision: 2, subsystemVendorId: 0x1AF4, subsystemId: 0x1100, interruptPin: 0)
    {
        if (vramBytes < MinVramBytes || vramBytes > MaxVramBytes || (vramBytes & (vramBytes - 1)) != 0)
            throw new ArgumentOutOfRangeException(nameof(vramBytes), $"VRAM of {vramBytes} bytes is not a power of two from 4 MiB to 256 MiB.");
        if ((long)preferredWidth * preferredHeight * 4 > vramBytes)
            throw new ArgumentOutOfRangeException(nameof(preferredWidth), $"{preferredWidth}x{preferredHeight} at 32 bpp does not fit in {vramBytes} bytes of VRAM.");
        PreferredWidth = preferredWidth;
        PreferredHeight = preferredHeight;
        _edid = Edid.Build(preferredWidth, preferredHeight);
        Vram = new Vram(vramBytes);
        _pageGeneration = new long[Vram.PageCount];
        _softDirty = new ulong[(Vram.PageCount + 63) / 64];
        _dispi = new DispiRegisters(vramBytes, m => Log(m)) { ClearVram = ClearVram };
        FramebufferBar = DefineBar(0, (ulong)vramBytes, is64Bit: false, prefetchable: true);
        MmioBar = DefineBar(2, MmioBarSize);
    }

    /// <summary>Gives the device the memory slot its framebuffer BAR maps through (before it is plugged).</summary>
    public void AttachSlot(IVramSlot slot)
    {
        lock (SyncRoot)
        {
            if (Bus is not null) throw new InvalidOperationException($"{Name}: the VRAM slot is attached before the function is plugged.");
            _slot = slot;
        }
    }

    /// <summary>The DISPI register values (for tests and display.get), read under the device lock.</summary>
    public ushort DispiRegister(int index) { lock (SyncRoot) return _dispi.Read(index); }
    public bool BigEndianFramebuffer { get { lock (SyncRoot) return _bigEndian; } }

    // ---- BAR mapping: the framebuffer is a memory slot wherever BAR 0 decodes ----
    protected override void OnBarMapped(PciBar bar)
    {
        if (bar == FramebufferBar) MapSlot(bar.MappedAt);
    }

    protected override void OnBarUnmapped(PciBar bar)
    {
        if (bar == FramebufferBar) MapSlot(null);
    }

    private void MapSlot(ulong? at)
    {
        try { _slot?.MapAt(at); }
        catch (Interop.NativeCallException e) when (e.Errno == 17 /* EEXIST */ && at is ulong a)
        {
            // SeaBIOS sizes BAR 0 (all ones: 0xff000000) while decoding is on, over the firmware image: nothing to
            // map there; the slot follows once the BAR is given its real address.
            Log($"{Name}: framebuffer BAR at 0x{a:x} overlaps other guest memory (the firmware sizing it): left unmapped until it moves");
        }
        catch (Exception e) { Log($"{Name}: framebuffer slot at {(at is ulong b ? $"0x{b:x}" : "none")}: {e.Message}"); }
    }

    // ---- BAR accesses ----
    protected override void BarRead(PciBar bar, ulong offset, Span<byte> data)
    {
        if (bar == FramebufferBar) { ReadVram(offset, data); return; }
        data.Clear();
        for (int i = 0; i < data.Length; i++)
        {
            ulong o = offset + (ulong)i;
            if (o < (ulong)_edid.Length) data[i] = _edid[o];
        }
        if (offset >= DispiOffset && offset < DispiOffset + DispiRegisters.Count * 2)
            for (int i = 0; i < data.Length; i++)
            {
                ulong o = offset + (ulong)i - DispiOffset;
                if (o >= DispiRegisters.Count * 2) break;
                ushort v = _dispi.Read((int)(o / 2));
                data[i] = (byte)(o % 2 == 0 ? v : v >> 8);
            }
        else if (offset >= QextOffset && offset < QextOffset + QextSize)
        {
            Span<byte> q = stackalloc byte[(int)QextSize];
            BinaryPrimitives.WriteUInt32LittleEndian(q, QextSize);
            BinaryPrimitives.WriteUInt32LittleEndian(q[4..], _bigEndian ? BigEndianMagic : LittleEndianMagic);
            for (int i = 0; i < data.Length && offset - QextOffset + (ulong)i < QextSize; i++) data[i] = q[(int)(offset - QextOffset) + i];
        }
    }

    protected override void BarWrite(PciBar bar, ulong offset, ReadOnlySpan<byte> data)
    {
        if (bar == FramebufferBar) { WriteVram(offset, data); return; }
        if (offset >= DispiOffset && offset < DispiOffset + DispiRegisters.Count * 2)
        {
            // Register by register; a byte write changes half of one (read-modify-write, as a 16-bit-only bus would).
            for (int i = 0; i < data.Length;)
            {
                ulong o = offset + (ulong)i - DispiOffset;
                int index = (int)(o / 2);
                if (index >= DispiRegisters.Count) break;
                ushort v = _dispi[index];
                if (o % 2 == 0 && i + 1 < data.Length) { v = BinaryPrimitives.ReadUInt16LittleEndian(data[i..]); i += 2; }
                else if (o % 2 == 0) { v = (ushort)(v & 0xFF00 | data[i]); i++; }
                else { v = (ushort)(v & 0x00FF | data[i] << 8); i++; }
                _dispi.Write(index, v);
            }
        }
        else if (offset == QextOffset + 4 && data.Length == 4)
        {
            uint v = BinaryPrimitives.ReadUInt32LittleEndian(data);
            if (v == LittleEndianMagic) _bigEndian = false;
            else if (v == BigEndianMagic) _bigEndian = true;
        }
        // EDID, the VGA window (0x400: bochs.c's unblank write) and the rest: read-only or nothing there.
    }

    // ---- display.get ----
    public IReadOnlyList<string> ControlRequests { get; } = [DisplayGetRequest.Name];

    public JsonElement HandleControlRequest(ControlRequest request)
    {
        if (request is not DisplayGetRequest) throw new ArgumentException($"bochs-display does not handle '{request.Request}'.");
        return JsonSerializer.SerializeToElement(StateReply(), ContractJsonContext.Default.DisplayStateReply);
    }

    public DisplayStateReply StateReply()
    {
        FramebufferMode mode;
        bool enabled;
        lock (SyncRoot) { mode = _dispi.Mode; enabled = _dispi.IsEnabled; }
        DisplayVncStatus? vnc = null;
        try { vnc = VncStatus?.Invoke(); }
        catch (Exception e) { Log($"{Name}: VNC status: {e.Message}"); }
        return new DisplayStateReply
        {
            Pci = $"00:{Slot:x2}.0",
            Enabled = enabled,
            WidthPixels = mode.Width,
            HeightPixels = mode.Height,
            BitsPerPixel = mode.BitsPerPixel,
            VncUnixPath = vnc?.UnixPath,
            VncTcp = vnc?.Tcp,
            VncPasswordRequired = vnc?.PasswordRequired ?? false,
            VncClients = vnc?.Clients ?? 0,
        };
    }

    // ---- state: the PCI function, then the registers and VRAM ----
    public override IEnumerable<IPersistent> PersistentParts()
    {
        yield return this;
        yield return new DisplayStatePart(this);
    }

    public override void Dispose()
    {
        lock (SyncRoot) MapSlot(null);
        Vram.Dispose();
    }
}
