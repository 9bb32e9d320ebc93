using System.Buffers.Binary;
using System.Text;
using KvmPS.State;
using KvmPS.Vm;

namespace KvmPS.Devices.Legacy;

/// <summary>
/// QEMU's firmware configuration device (fw_cfg) on the x86 I/O ports, as SeaBIOS and OVMF read it:
/// a 16-bit selector at 0x510, a byte-wide data port at 0x511 and the 64-bit big-endian DMA address register at
/// 0x514 (writing its low half, port 0x518, starts a transfer). Items are numbered keys; named blobs ("files") get keys
/// from 0x20 on and are listed in the file directory (key 0x19). The device is read-only for the guest: writes to
/// items are refused. Nothing the guest writes can make it throw: unknown keys read as zeros, DMA structures and
/// buffers are checked against guest RAM and a bad one only sets the error bit (or is ignored when the control
/// structure itself is outside RAM).
/// </summary>
public sealed class FwCfg : IBusDevice, IPersistent
{
    // I/O ports (x86)
    public const ushort BasePort = 0x510;
    public const int PortCount = 12;        // 0x510-0x51b
    public const ushort SelectorPort = 0x510, DataPort = 0x511, DmaPort = 0x514;

    // Well-known keys (docs/specs/fw_cfg.rst; SeaBIOS src/fw/paravirt.c)
    public const ushort KeySignature = 0x00, KeyId = 0x01, KeyUuid = 0x02, KeyRamSize = 0x03, KeyNoGraphic = 0x04,
        KeyNbCpus = 0x05, KeyNuma = 0x0d, KeyBootMenu = 0x0e, KeyMaxCpus = 0x0f, KeyFileDir = 0x19, KeyFileFirst = 0x20,
        KeyArchLocal = 0x8000, KeyIrq0Override = 0x8002;
    private const ushort KeyWriteFlag = 0x4000;
    public const int MaxFileNameLength = 55; // 56 bytes with the NUL

    /// <summary>Bits of the FW_CFG_ID item.</summary>
    public const uint FeatureTraditional = 1, FeatureDma = 2;
    /// <summary>Bits of the DMA control word.</summary>
    public const uint DmaError = 0x01, DmaRead = 0x02, DmaSkip = 0x04, DmaSelect = 0x08, DmaWrite = 0x10;
    /// <summary>What reading the DMA address register returns: "QEMU CFG" big-endian.</summary>
    public const ulong DmaSignature = 0x51454d5520434647;
    /// <summary>Largest single DMA transfer honoured; longer ones are cut into pieces internally (no limit for the guest).</summary>
    private const int DmaChunk = 1 << 20;

    private readonly object _lock = new();
    private readonly Dictionary<ushort, byte[]> _items = new();
    private readonly List<(string Name, ushort Key)> _files = new();
    private readonly GuestMemory? _memory;
    private readonly bool _dma;
    private ushort _selector;
    private int _offset;
    private uint _dmaHigh;

    public string Name => "fw-cfg";
    /// <summary>Completed DMA transfers (for tests and metrics).</summary>
    public long DmaTransfers { get; private set; }
    /// <summary>DMA requests refused (control structure or buffer outside guest RAM, writes).</summary>
    public long DmaErrors { get; private set; }

    /// <param name="memory">Guest RAM for DMA; null disables the DMA interface (and its feature bit).</param>
    public FwCfg(GuestMemory? memory)
    {
        _memory = memory;
        _dma = memory is not null;
        _items[KeySignature] = "QEMU"u8.ToArray();
        _items[KeyId] = Le32(FeatureTraditional | (_dma ? FeatureDma : 0));
        RebuildDirectory();
    }

    public static byte[] Le16(ushort v) { var b = new byte[2]; BinaryPrimitives.WriteUInt16LittleEndian(b, v); return b; }
    public static byte[] Le32(uint v) { var b = new byte[4]; BinaryPrimitives.WriteUInt32LittleEndian(b, v); return b; }
    public static byte[] Le64(ulong v) { var b = new byte[8]; BinaryPrimitives.WriteUInt64LittleEndian(b, v); return b; }

    /// <summary>Sets a numbered item (not a file key, not the directory).</summary>
    public void SetItem(ushort key, byte[] data)
    {
        if (key == KeyFileDir || (key & ~KeyArchLocal) >= KeyFileFirst && (key & KeyArchLocal) == 0)
            throw new ArgumentOutOfRangeException(nameof(key), $"fw_cfg key 0x{key:x} is reserved for the file directory or files.");
        lock (_lock) _items[(ushort)(key & ~KeyWriteFlag)] = data;
    }

    /// <summary>Adds (or replaces) a named file; returns its key.</summary>
    public ushort AddFile(string name, byte[] data)
    {
        if (name.Length == 0 || Encoding.UTF8.GetByteCount(name) > MaxFileNameLength)
            throw new ArgumentException($"fw_cfg file name '{name}' must be 1-{MaxFileNameLength} bytes.", nameof(name));
        lock (_lock)
        {
            foreach (var (n, k) in _files)
                if (n == name) { _items[k] = data; RebuildDirectory(); return k; }
            if (_files.Count >= KeyWriteFlag - KeyFileFirst) throw new InvalidOperationException("too many fw_cfg files.");
            ushort key = (ushort)(KeyFileFirst + _files.Count);
            _files.Add((name, key));
            _items[key] = data;
            RebuildDirectory();
            return key;
        }
    }

    public IReadOnlyList<string> FileNames { get { lock (_lock) return _files.Select(f => f.Name).ToArray(); } }

    /// <summary>The contents of an item or file (tests, diagnostics).</summary>
    public byte[]? GetFile(string name)
    {
        lock (_lock) foreach (var (n, k) in _files) if (n == name) return _items[k];
        return null;
    }

    // Directory: be32 count, then per file { be32 size, be16 select, be16 reserved, char name[56] }.
    private void RebuildDirectory()
    {
        var dir = new byte[4 + 64 * _files.Count];
        BinaryPrimitives.WriteUInt32BigEndian(dir, (uint)_files.Count);
        for (int i = 0; i < _files.Count; i++)
        {
            var e = dir.AsSpan(4 + 64 * i, 64);
            BinaryPrimitives.WriteUInt32BigEndian(e, (uint)_items[_files[i].Key].Length);
            BinaryPrimitives.WriteUInt16BigEndian(e[4..], _files[i].Key);
            Encoding.UTF8.GetBytes(_files[i].Name, e[8..]);
        }
        _items[KeyFileDir] = dir;
    }

    private byte[] Current => _items.TryGetValue(_selector, out var d) ? d : [];

    public void Read(ulong offset, Span<byte> data)
    {
        lock (_lock)
        {
            switch (offset)
            {
                case 1: // data port: sequential bytes of the selected item, zeros past its end
                    var item = Current;
                    for (int i = 0; i < data.Length; i++)
                    {
                        data[i] = (uint)_offset < (uint)item.Length ? item[_offset] : (byte)0;
                        if (_offset < int.MaxValue) _offset++; // saturate: a guest reading forever must not wrap it negative
                    }
                    return;
                case >= 4 and < 12 when _dma:
                    Span<byte> sig = stackalloc byte[8];
                    BinaryPrimitives.WriteUInt64BigEndian(sig, DmaSignature);
                    for (int i = 0; i < data.Length; i++)
                        data[i] = (int)offset + i - 4 < 8 ? sig[(int)offset + i - 4] : (byte)0;
                    return;
                case 0: // the selector is write-only
                default:
                    data.Fill(offset == 0 ? (byte)0 : (byte)0xff);
                    return;
            }
        }
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        lock (_lock)
        {
            if (offset == 0 && data.Length >= 2) Select(BinaryPrimitives.ReadUInt16LittleEndian(data));
            else if (offset == 0 && data.Length == 1) Select(data[0]);
            else if (offset == 4 && data.Length == 4 && _dma) _dmaHigh = BinaryPrimitives.ReadUInt32BigEndian(data);
            else if (offset == 8 && data.Length == 4 && _dma)
            {
                ulong address = (ulong)_dmaHigh << 32 | BinaryPrimitives.ReadUInt32BigEndian(data);
                _dmaHigh = 0;
                Dma(address);
            }
            // Data-port writes (the legacy write interface) are ignored: no item is writable.
        }
    }

    private void Select(ushort key)
    {
        _selector = (ushort)(key & ~KeyWriteFlag);
        _offset = 0;
    }

    /// <summary>Runs one DMA request whose FWCfgDmaAccess {be32 control, be32 length, be64 address} is at <paramref name="access"/>.</summary>
    private void Dma(ulong access)
    {
        var mem = _memory!;
        if (!mem.TryGetReadOnlySpan(access, 16, out var header)) { DmaErrors++; return; } // nowhere to report: ignore
        uint control = BinaryPrimitives.ReadUInt32BigEndian(header);
        uint length = BinaryPrimitives.ReadUInt32BigEndian(header[4..]);
        ulong address = BinaryPrimitives.ReadUInt64BigEndian(header[8..]);
        bool ok = true;
        if ((control & DmaSelect) != 0) Select((ushort)(control >> 16));
        if ((control & DmaRead) != 0) ok = DmaCopy(mem, address, length);
        else if ((control & DmaWrite) != 0) ok = false; // nothing is writable
        else if ((control & DmaSkip) != 0) _offset = (int)Math.Min((long)_offset + length, int.MaxValue);
        if (ok) DmaTransfers++; else DmaErrors++;
        // Completion: control becomes 0, or just the error bit. The header may have moved out of RAM? It cannot:
        // guest RAM does not change under a running transfer, and the span was checked above.
        if (mem.TryGetWritableSpan(access, 4, out var ctl)) BinaryPrimitives.WriteUInt32BigEndian(ctl, ok ? 0 : DmaError);
    }

    private bool DmaCopy(GuestMemory mem, ulong address, uint length)
    {
        var item = Current;
        ulong done = 0;
        while (done < length)
        {
            int n = (int)Math.Min(length - done, (ulong)DmaChunk);
            if (address + done < address || !mem.TryGetWritableSpan(address + done, n, out var dst)) return false;
            int have = Math.Clamp(item.Length - _offset, 0, n);
            if (have > 0) item.AsSpan(_offset, have).CopyTo(dst);
            dst[have..].Clear();
            _offset = (int)Math.Min((long)_offset + n, int.MaxValue);
            done += (ulong)n;
        }
        return true;
    }

    // ---- state ----
    public string StateName => "fw-cfg";
    public ushort StateVersion => FwCfgState.Version;

    public FwCfgState CaptureState()
    {
        lock (_lock) return new FwCfgState(_selector, _offset, _dmaHigh, _files.Select(f => f.Name).ToArray());
    }

    public void SaveState(StateWriter writer) => CaptureState().Write(writer);

    public void RestoreState(StateReader reader, ushort version)
    {
        var s = FwCfgState.Read(reader, version);
        lock (_lock)
        {
            var mine = _files.Select(f => f.Name).ToArray();
            if (!mine.SequenceEqual(s.FileNames))
                throw reader.Fail($"the snapshot's fw_cfg files ({string.Join(", ", s.FileNames)}) differ from this VM's ({string.Join(", ", mine)})");
            if (s.DmaHigh != 0 && !_dma) throw reader.Fail("a DMA address is set but this fw_cfg has no DMA interface");
            _selector = s.Selector;
            _offset = s.Offset;
            _dmaHigh = s.DmaHigh;
        }
    }
}
