using System.Buffers.Binary;

namespace KvmPS.VfioUserTestDevice;

/// <summary>
/// The test device (README.md in this folder has the register map): PCI id 1b36:7f5e, BAR0 = 4 KiB of registers
/// (trapped), BAR2 = 64 KiB of memfd-backed memory the client may mmap, BAR4 = the MSI-X table (4 vectors) and PBA,
/// an MSI capability (4 vectors, 64-bit, per-vector masking) beside MSI-X as many real functions have, and a DMA
/// engine that transforms a buffer in guest memory in place and raises an MSI-X or MSI vector.
/// </summary>
internal sealed unsafe class TestDevice : IDisposable
{
    public const ushort VendorId = 0x1b36, DeviceId = 0x7f5e;
    public const int Bar0Bytes = 4096, Bar2Bytes = 64 * 1024, Bar4Bytes = 4096, MsixVectors = 4, MsiVectors = 4;
    public const int RegionBar0 = 0, RegionBar2 = 2, RegionBar4 = 4, RegionConfig = 7, RegionCount = 9;
    public const int MaxDmaBytes = 1 << 20;
    public const uint Magic = 0x30554656; // "VFU0"

    // BAR0 registers (byte offsets).
    public const int RegMagic = 0x00, RegVersion = 0x04, RegDmaAddrLo = 0x08, RegDmaAddrHi = 0x0c, RegDmaLen = 0x10,
        RegDmaOp = 0x14, RegDmaKey = 0x18, RegDoorbell = 0x1c, RegStatus = 0x20, RegChecksum = 0x24, RegCompleted = 0x28,
        RegIrqVector = 0x2c, RegError = 0x30, RegScratch = 0x34, RegIrqCount = 0x38, RegResetCount = 0x3c,
        RegBar2SumLen = 0x40, RegBar2Sum = 0x44, RegIrqAck = 0x48;
    public const uint OpXor = 1, OpReverse = 2, OpReverseXor = 3;
    public const uint StatusDone = 1, StatusError = 2;
    public const uint ErrorLength = 1, ErrorNotMapped = 2, ErrorOp = 3;

    private readonly byte[] _config;
    private readonly byte[] _writableMask;
    private readonly uint[] _regs = new uint[Bar0Bytes / 4];
    private readonly byte[] _bar4 = new byte[Bar4Bytes];
    private readonly int _bar2Fd;
    private readonly byte* _bar2;
    private uint _resets;

    public DmaSpace Dma { get; } = new();
    public Interrupts Irqs { get; } = new(MsixVectors, MsiVectors);
    public int ConfigBytes { get; }
    /// <summary>--intx: the function has INTA, raised on completion while MSI-X is off.</summary>
    public bool Intx { get; }
    /// <summary>Set by --crash-on-dma: the doorbell ring that makes the process exit (0 = never).</summary>
    public int CrashOnDma { get; init; }
    private int _doorbells;

    public TestDevice(int configBytes, bool intx = false)
    {
        ConfigBytes = configBytes;
        Intx = intx;
        _config = new byte[configBytes];
        _writableMask = new byte[configBytes];
        _bar2Fd = Native.MemfdCreate("vfio-user-test-bar2", Native.MFD_CLOEXEC);
        if (_bar2Fd < 0 || Native.Ftruncate(_bar2Fd, Bar2Bytes) != 0) throw new IOException("memfd for BAR2 failed");
        nint map = Native.Mmap(0, Bar2Bytes, Native.PROT_READ | Native.PROT_WRITE, Native.MAP_SHARED, _bar2Fd, 0);
        if (map == -1) throw new IOException("mmap of BAR2 failed");
        _bar2 = (byte*)map;
        BuildConfig();
        ResetRegisters();
        // INTx may fire later than the completion (when an unmask arrives after it): every signal counts.
        Irqs.IntxSignalled = () => _regs[RegIrqCount / 4]++;
    }

    public int Bar2Fd => _bar2Fd;

    public static ulong RegionSize(int index) => index switch
    {
        RegionBar0 => Bar0Bytes,
        RegionBar2 => Bar2Bytes,
        RegionBar4 => Bar4Bytes,
        _ => 0,
    };

    private void BuildConfig()
    {
        var c = _config.AsSpan();
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x00..], VendorId);
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x02..], DeviceId);
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x06..], 0x0010); // status: capability list
        c[0x08] = 1;                                                  // revision
        c[0x0b] = 0xff;                                               // class ff0000: "unassigned class"
        BinaryPrimitives.WriteUInt32LittleEndian(c[0x18..], 0x8);    // BAR2: 32-bit prefetchable memory
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x2c..], VendorId);
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x2e..], 0x0001);
        c[0x34] = 0x40;                                               // first capability
        if (Intx) c[0x3d] = 1;                                        // interrupt pin: INTA
        // MSI-X at 0x40: 4 vectors, table at BAR4+0, PBA at BAR4+0x800.
        c[0x40] = 0x11;
        c[0x41] = 0x50;
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x42..], MsixVectors - 1);
        BinaryPrimitives.WriteUInt32LittleEndian(c[0x44..], 0x000 | 4);
        BinaryPrimitives.WriteUInt32LittleEndian(c[0x48..], 0x800 | 4);
        // MSI at 0x50: 64-bit, per-vector masking, 4 vectors capable (MMC 2); address 0x54, data 0x5c, mask 0x60, pending 0x64.
        c[0x50] = 0x05;
        c[0x51] = 0;
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x52..], 0x0184);
        // Writable: command (memory, bus master, INTx disable), BAR0/2/4 above their size, interrupt line, MSI-X
        // enable and function mask.
        _writableMask[0x04] = 0x06;
        _writableMask[0x05] = 0x04;
        SetBarMask(0x10, Bar0Bytes);
        SetBarMask(0x18, Bar2Bytes);
        SetBarMask(0x20, Bar4Bytes);
        _writableMask[0x3c] = 0xff;
        _writableMask[0x43] = 0xc0;
        // MSI: enable and multiple message enable, address, data, mask bits of the 4 vectors (a client that forwards them).
        _writableMask[0x52] = 0x71;
        BinaryPrimitives.WriteUInt32LittleEndian(_writableMask.AsSpan(0x54), 0xffff_fffc);
        BinaryPrimitives.WriteUInt32LittleEndian(_writableMask.AsSpan(0x58), 0xffff_ffff);
        BinaryPrimitives.WriteUInt16LittleEndian(_writableMask.AsSpan(0x5c), 0xffff);
        _writableMask[0x60] = 0x0f;
    }

    private void SetBarMask(int offset, uint size) =>
        BinaryPrimitives.WriteUInt32LittleEndian(_writableMask.AsSpan(offset), ~(size - 1));

    /// <summary>Device reset (VFIO_USER_DEVICE_RESET): registers, BAR2's contents and the config writes go back to power-on.</summary>
    public void Reset()
    {
        _resets++;
        for (int i = 0; i < ConfigBytes; i++) _config[i] = (byte)(_config[i] & ~_writableMask[i]);
        new Span<byte>(_bar2, Bar2Bytes).Clear();
        Array.Clear(_bar4);
        ResetRegisters();
    }

    private void ResetRegisters()
    {
        Array.Clear(_regs);
        _regs[RegMagic / 4] = Magic;
        _regs[RegVersion / 4] = 1;
        _regs[RegResetCount / 4] = _resets;
    }

    public bool IsValidAccess(int region, ulong offset, uint count)
    {
        ulong size = region == RegionConfig ? (ulong)ConfigBytes : RegionSize(region);
        return size != 0 && count != 0 && offset < size && count <= size - offset;
    }

    public void Read(int region, ulong offset, Span<byte> data)
    {
        switch (region)
        {
            case RegionConfig: _config.AsSpan((int)offset, data.Length).CopyTo(data); break;
            case RegionBar0: ReadRegisters((int)offset, data); break;
            case RegionBar2: new Span<byte>(_bar2 + offset, data.Length).CopyTo(data); break;
            case RegionBar4: _bar4.AsSpan((int)offset, data.Length).CopyTo(data); break;
        }
    }

    public void Write(int region, ulong offset, ReadOnlySpan<byte> data)
    {
        switch (region)
        {
            case RegionConfig:
                for (int i = 0; i < data.Length; i++)
                {
                    int at = (int)offset + i;
                    _config[at] = (byte)((_config[at] & ~_writableMask[at]) | (data[i] & _writableMask[at]));
                }
                break;
            case RegionBar0: WriteRegisters((int)offset, data); break;
            case RegionBar2: data.CopyTo(new Span<byte>(_bar2 + offset, data.Length)); break;
            case RegionBar4: data.CopyTo(_bar4.AsSpan((int)offset)); break;
        }
    }

    private void ReadRegisters(int offset, Span<byte> data)
    {
        for (int i = 0; i < data.Length; i++)
        {
            int at = offset + i;
            data[i] = (byte)(_regs[at / 4] >> (8 * (at % 4)));
        }
    }

    /// <summary>Registers take whole aligned 32-bit writes (an 8-byte write is two); other sizes are ignored, as a device decoding only dwords would.</summary>
    private void WriteRegisters(int offset, ReadOnlySpan<byte> data)
    {
        if (offset % 4 != 0 || data.Length % 4 != 0) return;
        for (int i = 0; i < data.Length; i += 4) WriteRegister(offset + i, BinaryPrimitives.ReadUInt32LittleEndian(data[i..]));
    }

    private void WriteRegister(int reg, uint value)
    {
        switch (reg)
        {
            case RegDmaAddrLo or RegDmaAddrHi or RegDmaLen or RegDmaOp or RegDmaKey or RegIrqVector or RegScratch:
                _regs[reg / 4] = value;
                break;
            case RegStatus:
                _regs[reg / 4] &= ~value; // write 1 to clear
                break;
            case RegDoorbell:
                if (value != 0) RunDma();
                break;
            case RegIrqAck:
                Irqs.LowerIntx(); // the driver handled the completion: INTx goes low
                break;
            case RegBar2SumLen:
                uint len = Math.Min(value, Bar2Bytes);
                _regs[RegBar2SumLen / 4] = len;
                _regs[RegBar2Sum / 4] = Fnv1a(new ReadOnlySpan<byte>(_bar2, (int)len));
                break;
        }
    }

    private void RunDma()
    {
        _doorbells++;
        if (CrashOnDma > 0 && _doorbells >= CrashOnDma)
        {
            Console.Error.WriteLine($"vfio-user-test-device: --crash-on-dma {CrashOnDma}: exiting on doorbell {_doorbells}");
            Environment.Exit(3);
        }
        ulong address = _regs[RegDmaAddrLo / 4] | (ulong)_regs[RegDmaAddrHi / 4] << 32;
        uint length = _regs[RegDmaLen / 4];
        uint op = _regs[RegDmaOp / 4];
        byte key = (byte)_regs[RegDmaKey / 4];
        uint error = 0;
        if (length == 0 || length > MaxDmaBytes) error = ErrorLength;
        else if (op is not (OpXor or OpReverse or OpReverseXor)) error = ErrorOp;
        else if (Dma.Translate(address, length) is not { } buffer) error = ErrorNotMapped;
        else
        {
            var span = new Span<byte>((void*)buffer, (int)length);
            if (op is OpReverse or OpReverseXor) span.Reverse();
            if (op is OpXor or OpReverseXor) for (int i = 0; i < span.Length; i++) span[i] ^= key;
            _regs[RegChecksum / 4] = Fnv1a(span);
            _regs[RegCompleted / 4]++;
        }
        _regs[RegError / 4] = error;
        _regs[RegStatus / 4] = error == 0 ? StatusDone : StatusError;
        // MSI-X when the client enabled it, else MSI; else INTx when the function has it and the command register allows it.
        var vectors = Irqs.Msix.Enabled ? Irqs.Msix : Irqs.Msi.Enabled ? Irqs.Msi : null;
        if (vectors is null && Intx && Irqs.IntxConnected)
        {
            if ((_config[0x05] & 0x04) == 0) Irqs.RaiseIntx(); // IRQ_COUNT counts its signals (IntxSignalled)
        }
        else if ((vectors ?? Irqs.Msix).Trigger((int)_regs[RegIrqVector / 4])) _regs[RegIrqCount / 4]++;
    }

    /// <summary>32-bit FNV-1a: the checksum the guest driver computes too.</summary>
    public static uint Fnv1a(ReadOnlySpan<byte> data)
    {
        uint h = 2166136261;
        foreach (byte b in data) h = (h ^ b) * 16777619;
        return h;
    }

    public void Dispose()
    {
        Native.Munmap((nint)_bar2, Bar2Bytes);
        Native.Close(_bar2Fd);
        Dma.UnmapAll();
        Irqs.DisableAll();
    }
}
