using System.Buffers.Binary;
using KvmPS.State;
using KvmPS.Vm;

namespace KvmPS.Devices.Pci;

/// <summary>
/// A PCI function with a type-0 configuration header: read-only identity, a writable command register, memory BARs
/// with the sizing protocol (write all-ones, read back the size mask), a capability list, INTx. Subclasses provide
/// the BAR contents. Every config or BAR access runs under <see cref="SyncRoot"/>; nothing the guest writes throws.
/// </summary>
public abstract class PciDevice : IPersistent, IDisposable
{
    public const int ConfigSize = 256;
    public const ushort CommandIo = 1 << 0, CommandMemory = 1 << 1, CommandBusMaster = 1 << 2, CommandIntxDisable = 1 << 10;
    public const ushort StatusInterrupt = 1 << 3, StatusCapList = 1 << 4;
    public const byte CapIdMsiX = 0x11, CapIdVendor = 0x09;

    private readonly byte[] _config = new byte[ConfigSize];
    private readonly byte[] _writeMask = new byte[ConfigSize];
    private readonly PciBar?[] _bars = new PciBar?[6];
    private int _nextCapOffset = 0x40;
    private int _lastCap;
    private bool _intxAsserted, _intxLineLevel;
    // The expansion ROM BAR (0x30): its image, where it is decoded now, and the MMIO region that serves it.
    private PciExpansionRom? _rom;
    private ulong? _romMappedAt;
    private IBusDevice? _romRegion;
    private long _romBytesRead, _romMappedTicks;

    protected readonly object SyncRoot = new();

    public abstract string Name { get; }
    public PciBus? Bus { get; private set; }
    public int Slot { get; private set; } = -1;
    internal IInterruptLine? IntxLine { get; private set; }
    /// <summary>The bus log behind a per-device rate limiter (<see cref="DeviceLog"/>): most of what a device logs is guest-triggered.</summary>
    protected Action<string> Log { get; }

    protected PciDevice(ushort vendorId, ushort deviceId, uint classCode, byte revision, ushort subsystemVendorId, ushort subsystemId, byte interruptPin)
    {
        Log = new DeviceLog(m => Bus?.Log(m)).Write;
        Set16(0x00, vendorId);
        Set16(0x02, deviceId);
        Set8(0x08, revision);
        Set8(0x09, (byte)classCode);        // programming interface
        Set8(0x0A, (byte)(classCode >> 8)); // subclass
        Set8(0x0B, (byte)(classCode >> 16)); // base class
        Set16(0x2C, subsystemVendorId);
        Set16(0x2E, subsystemId);
        Set8(0x3D, interruptPin);
        Mask16(0x04, CommandIo | CommandMemory | CommandBusMaster | (1 << 6) | (1 << 8) | CommandIntxDisable);
        Mask8(0x0C, 0xFF); // cache line size
        Mask8(0x3C, 0xFF); // interrupt line (firmware/OS scratch)
    }

    public ushort VendorId => Get16(0x00);
    public ushort DeviceId => Get16(0x02);
    public uint ClassCode => (uint)(_config[0x0B] << 16 | _config[0x0A] << 8 | _config[0x09]);
    public ushort Command { get { lock (SyncRoot) return Get16(0x04); } }
    public bool MemoryEnabled => (Get16(0x04) & CommandMemory) != 0;
    public bool BusMasterEnabled => (Get16(0x04) & CommandBusMaster) != 0;
    public byte InterruptPin => _config[0x3D];
    public IReadOnlyList<PciBar> Bars => _bars.Where(b => b is not null).Select(b => b!).Distinct().ToArray();
    public PciBar? Bar(int index) => _bars[index];

    // ---- construction helpers for subclasses ----
    protected byte Get8(int o) => _config[o];
    protected ushort Get16(int o) => BinaryPrimitives.ReadUInt16LittleEndian(_config.AsSpan(o));
    protected uint Get32(int o) => BinaryPrimitives.ReadUInt32LittleEndian(_config.AsSpan(o));
    protected void Set8(int o, byte v) => _config[o] = v;
    protected void Set16(int o, ushort v) => BinaryPrimitives.WriteUInt16LittleEndian(_config.AsSpan(o), v);
    protected void Set32(int o, uint v) => BinaryPrimitives.WriteUInt32LittleEndian(_config.AsSpan(o), v);
    protected void Mask8(int o, byte m) => _writeMask[o] = m;
    protected void Mask16(int o, ushort m) => BinaryPrimitives.WriteUInt16LittleEndian(_writeMask.AsSpan(o), m);
    protected void Mask32(int o, uint m) => BinaryPrimitives.WriteUInt32LittleEndian(_writeMask.AsSpan(o), m);

    /// <summary>Declares a memory BAR (size a power of two, at least 16 bytes). A 64-bit BAR also takes index + 1.</summary>
    protected PciBar DefineBar(int index, ulong size, bool is64Bit = false, bool prefetchable = false)
    {
        if (index < 0 || index > (is64Bit ? 4 : 5)) throw new ArgumentOutOfRangeException(nameof(index));
        if (size < 16 || (size & (size - 1)) != 0 || (!is64Bit && size > 0x8000_0000)) throw new ArgumentOutOfRangeException(nameof(size), $"BAR size 0x{size:x} must be a power of two ≥ 16 (≤ 2 GiB for a 32-bit BAR).");
        if (_bars[index] is not null || (is64Bit && _bars[index + 1] is not null)) throw new InvalidOperationException($"BAR{index} is already defined.");
        var bar = new PciBar(this, index, size, is64Bit, prefetchable);
        _bars[index] = bar;
        if (is64Bit) _bars[index + 1] = bar;
        Set32(0x10 + 4 * index, bar.FlagBits);
        return bar;
    }

    /// <summary>The expansion ROM behind the ROM BAR, or null (the BAR reads as zero: no ROM).</summary>
    public PciExpansionRom? ExpansionRom => _rom;
    /// <summary>Where the ROM is decoded right now (ROM enable bit, memory decode and an address all set), or null.</summary>
    public ulong? ExpansionRomMappedAt { get { lock (SyncRoot) return _romMappedAt; } }

    /// <summary>
    /// Gives the function an expansion ROM (before it is plugged): the ROM BAR at 0x30 becomes writable in its
    /// address bits and the enable bit, and sizes as the image rounded up to a power of two.
    /// </summary>
    public void AttachExpansionRom(PciExpansionRom rom)
    {
        lock (SyncRoot)
        {
            if (Bus is not null) throw new InvalidOperationException($"{Name}: an expansion ROM is attached before the function is plugged.");
            if (_rom is not null) throw new InvalidOperationException($"{Name} already has an expansion ROM.");
            _rom = rom;
            _romRegion = new RomRegion(this);
            Set32(0x30, 0); // unassigned and disabled until firmware programs it
        }
    }

    /// <summary>Appends a capability (<paramref name="body"/> excludes the ID and next-pointer bytes); returns its config offset.</summary>
    protected int AddCapability(byte id, ReadOnlySpan<byte> body, ReadOnlySpan<byte> bodyWriteMask = default)
    {
        int length = (2 + body.Length + 3) & ~3;
        int at = _nextCapOffset;
        if (at + length > ConfigSize) throw new InvalidOperationException("PCI capability list does not fit in config space.");
        _config[at] = id;
        body.CopyTo(_config.AsSpan(at + 2));
        if (!bodyWriteMask.IsEmpty) bodyWriteMask.CopyTo(_writeMask.AsSpan(at + 2));
        if (_lastCap == 0) { Set8(0x34, (byte)at); Set16(0x06, (ushort)(Get16(0x06) | StatusCapList)); }
        else _config[_lastCap + 1] = (byte)at;
        _lastCap = at;
        _nextCapOffset = at + length;
        return at;
    }

    // ---- bus attachment ----
    internal void AttachTo(PciBus bus, int slot, IInterruptLine? intx)
    {
        Bus = bus;
        Slot = slot;
        IntxLine = intx;
        OnAttached();
    }

    internal void DetachFromBus()
    {
        lock (SyncRoot)
        {
            foreach (var bar in _bars.Distinct()) if (bar is not null) Unmap(bar);
            UnmapRom();
            SetIntxLineLevel(false);
        }
        Bus = null;
        Slot = -1;
        IntxLine = null;
    }

    protected virtual void OnAttached() { }

    /// <summary>Programs a BAR like firmware would (the VMM pre-assigns every BAR when the device is plugged).</summary>
    internal void AssignBar(PciBar bar, ulong address)
    {
        lock (SyncRoot)
        {
            WriteBarDword(bar.Index, (uint)address);
            if (bar.Is64Bit) WriteBarDword(bar.Index + 1, (uint)(address >> 32));
            UpdateBarMappings();
        }
    }

    /// <summary>Sets command register bits as firmware would (memory decode on after BAR assignment).</summary>
    internal void EnableDecode(ushort bits)
    {
        lock (SyncRoot)
        {
            Set16(0x04, (ushort)(Get16(0x04) | bits));
            UpdateBarMappings();
        }
    }

    // ---- config space accesses ----
    /// <summary>Virtual so a passthrough function can take its capability area and extended space from the device.</summary>
    public virtual void ConfigRead(int offset, Span<byte> data)
    {
        lock (SyncRoot)
        {
            for (int i = 0; i < data.Length; i++)
            {
                int o = offset + i;
                data[i] = o >= 0 && o < ConfigSize ? _config[o] : (byte)0; // extended space (ECAM): no capabilities
            }
            OnConfigRead(offset, data);
        }
    }

    public virtual void ConfigWrite(int offset, ReadOnlySpan<byte> data)
    {
        try
        {
            lock (SyncRoot)
            {
                ushort oldCommand = Get16(0x04);
                bool barTouched = false, romTouched = false;
                Span<byte> before = stackalloc byte[data.Length];
                for (int i = 0; i < data.Length; i++)
                {
                    int o = offset + i;
                    if (o < 0 || o >= ConfigSize) continue;
                    before[i] = _config[o];
                    if (o >= 0x10 && o < 0x28) { barTouched = true; continue; }
                    if (o >= 0x30 && o < 0x34) { romTouched = true; continue; }
                    _config[o] = (byte)((_config[o] & ~_writeMask[o]) | (data[i] & _writeMask[o]));
                }
                if (barTouched)
                {
                    Span<byte> value = stackalloc byte[4];
                    for (int dw = 0; dw < 6; dw++)
                    {
                        int b = 0x10 + 4 * dw;
                        if (offset >= b + 4 || offset + data.Length <= b) continue;
                        _config.AsSpan(b, 4).CopyTo(value);
                        for (int i = 0; i < 4; i++)
                        {
                            int k = b + i - offset;
                            if (k >= 0 && k < data.Length) value[i] = data[k];
                        }
                        WriteBarDword(dw, BinaryPrimitives.ReadUInt32LittleEndian(value));
                    }
                    UpdateBarMappings();
                }
                if (romTouched)
                {
                    Span<byte> value = stackalloc byte[4];
                    _config.AsSpan(0x30, 4).CopyTo(value);
                    for (int i = 0; i < 4; i++)
                    {
                        int k = 0x30 + i - offset;
                        if (k >= 0 && k < data.Length) value[i] = data[k];
                    }
                    WriteRomDword(BinaryPrimitives.ReadUInt32LittleEndian(value));
                    UpdateRomMapping();
                }
                ushort newCommand = Get16(0x04);
                if (newCommand != oldCommand)
                {
                    if (((newCommand ^ oldCommand) & CommandMemory) != 0) UpdateBarMappings();
                    SetIntxLineLevel(_intxAsserted && (newCommand & CommandIntxDisable) == 0);
                }
                OnConfigWrite(offset, data.Length);
            }
        }
        catch (Exception e)
        {
            Log($"{Name}: config write at 0x{offset:x} failed: {e.Message}");
        }
    }

    /// <summary>Lets a subclass refresh dynamic registers before a read returns (called under the lock).</summary>
    protected virtual void OnConfigRead(int offset, Span<byte> data) { }
    /// <summary>Called under the lock after a config write has been applied through the write masks.</summary>
    protected virtual void OnConfigWrite(int offset, int length) { }

    private void WriteBarDword(int dw, uint value)
    {
        var bar = _bars[dw];
        if (bar is null) return; // unimplemented BAR: hard-wired to zero
        int o = 0x10 + 4 * dw;
        bool upper = bar.Is64Bit && dw == bar.Index + 1;
        uint stored = upper
            ? value & (uint)~((bar.Size - 1) >> 32)
            : (value & ~(uint)(bar.Size - 1) & ~0xFu) | bar.FlagBits;
        Set32(o, stored);
        ulong low = Get32(0x10 + 4 * bar.Index) & ~0xFUL;
        ulong high = bar.Is64Bit ? Get32(0x10 + 4 * bar.Index + 4) : 0;
        bar.Address = high << 32 | low;
    }

    /// <summary>
    /// The ROM BAR register: address bits above the ROM's size and the enable bit are kept, bits 10:1 read as zero;
    /// without a ROM the register is hard-wired to zero (which is how firmware learns there is none).
    /// </summary>
    private void WriteRomDword(uint value)
    {
        if (_rom is null) { Set32(0x30, 0); return; }
        Set32(0x30, value & (~(_rom.BarSize - 1) | PciExpansionRom.EnableBit));
    }

    /// <summary>Decodes the ROM where the BAR says when its enable bit and the memory-enable bit are both set.</summary>
    private void UpdateRomMapping()
    {
        if (_rom is null) return;
        uint reg = Get32(0x30);
        ulong address = reg & ~(_rom.BarSize - 1);
        ulong? want = MemoryEnabled && (reg & PciExpansionRom.EnableBit) != 0 && address != 0 ? address : null;
        if (want == _romMappedAt) return;
        UnmapRom();
        if (want is ulong at && Bus is { } bus)
        {
            try
            {
                bus.Mmio.Register(_romRegion!, at, _rom.BarSize);
                _romMappedAt = at;
                _romBytesRead = 0;
                _romMappedTicks = Environment.TickCount64;
            }
            catch (BusConflictException e)
            {
                Log($"{Name}: expansion ROM at 0x{at:x} not decoded: {e.Message}");
            }
        }
    }

    private void UnmapRom()
    {
        if (_romMappedAt is not ulong at) return;
        Bus?.Mmio.Unregister(_romRegion!);
        _romMappedAt = null;
        // How long firmware took to copy the ROM out through MMIO exits: the cost of serving it without a memory slot.
        if (_romBytesRead > 0)
            Log($"{Name}: expansion ROM at 0x{at:x}: {_romBytesRead} bytes read in {Environment.TickCount64 - _romMappedTicks} ms while decoded");
    }

    private sealed class RomRegion(PciDevice owner) : IBusDevice
    {
        public string Name => $"{owner.Name} ROM";
        public void Read(ulong offset, Span<byte> data)
        {
            lock (owner.SyncRoot)
            {
                if (owner._rom is { } rom) rom.Read(offset, data); else data.Fill(0xFF);
                owner._romBytesRead += data.Length;
            }
        }
        // Read-only memory: writes are dropped, as a real ROM ignores them.
        public void Write(ulong offset, ReadOnlySpan<byte> data) { }
    }

    /// <summary>Brings every BAR's MMIO registration in line with the BAR address and the memory-enable bit.</summary>
    protected void UpdateBarMappings()
    {
        for (int i = 0; i < 6; i++)
        {
            var bar = _bars[i];
            if (bar is null || bar.Index != i) continue;
            ulong? want = MemoryEnabled && bar.Address != 0 && bar.Address + bar.Size <= MaxDecodableAddress && bar.Address + bar.Size > bar.Address
                ? bar.Address : null;
            if (want == bar.MappedAt) continue;
            Unmap(bar);
            if (want is ulong at && Bus is { } bus)
            {
                try
                {
                    bus.Mmio.Register(bar.Region, at, bar.Size);
                    bar.MappedAt = at;
                    OnBarMapped(bar);
                }
                catch (BusConflictException e)
                {
                    Log($"{Name}: BAR{bar.Index} at 0x{at:x} not decoded: {e.Message}");
                }
            }
        }
        UpdateRomMapping();
    }

    /// <summary>Guest-physical addresses at or above this are never decoded (beyond any CPU's physical address width).</summary>
    public const ulong MaxDecodableAddress = 1UL << 48;

    private void Unmap(PciBar bar)
    {
        if (bar.MappedAt is null) return;
        Bus?.Mmio.Unregister(bar.Region);
        bar.MappedAt = null;
        OnBarUnmapped(bar);
    }

    /// <summary>A BAR became visible at <see cref="PciBar.MappedAt"/> (e.g. to attach ioeventfds there).</summary>
    protected virtual void OnBarMapped(PciBar bar) { }
    /// <summary>A BAR stopped being decoded (moved, memory disabled, or unplugged).</summary>
    protected virtual void OnBarUnmapped(PciBar bar) { }

    internal void DispatchBarRead(PciBar bar, ulong offset, Span<byte> data)
    {
        try
        {
            lock (SyncRoot) BarRead(bar, offset, data);
        }
        catch (Exception e)
        {
            data.Fill(0xFF);
            Log($"{Name}: BAR{bar.Index} read at 0x{offset:x} failed: {e.Message}");
        }
    }

    internal void DispatchBarWrite(PciBar bar, ulong offset, ReadOnlySpan<byte> data)
    {
        try
        {
            lock (SyncRoot) BarWrite(bar, offset, data);
        }
        catch (Exception e)
        {
            Log($"{Name}: BAR{bar.Index} write at 0x{offset:x} failed: {e.Message}");
        }
    }

    protected virtual void BarRead(PciBar bar, ulong offset, Span<byte> data) => data.Fill(0xFF);
    protected virtual void BarWrite(PciBar bar, ulong offset, ReadOnlySpan<byte> data) { }

    // ---- INTx ----
    /// <summary>Asserts or deasserts the function's INTx pin (level); the command register's INTx-disable gates the line.</summary>
    protected void SetIntx(bool asserted)
    {
        _intxAsserted = asserted;
        Set16(0x06, (ushort)(asserted ? Get16(0x06) | StatusInterrupt : Get16(0x06) & ~StatusInterrupt));
        SetIntxLineLevel(asserted && (Get16(0x04) & CommandIntxDisable) == 0);
    }

    private void SetIntxLineLevel(bool level)
    {
        if (level == _intxLineLevel) return;
        _intxLineLevel = level;
        try { IntxLine?.SetLevel(level); }
        catch (Exception e) { Log($"{Name}: INTx: {e.Message}"); }
    }

    // ---- state ----
    /// <summary>"pci/00:SS.0": the function's address on bus 0, stable as long as the configuration is.</summary>
    public string StateName => $"pci/00:{Slot:x2}.0";
    public ushort StateVersion => PciDeviceState.Version;

    /// <summary>
    /// This function's records in restore order: its configuration space first (so BARs decode again), then what a
    /// subclass adds (a virtio transport: the transport, each queue, the device). Names start with <see cref="StateName"/>.
    /// </summary>
    public virtual IEnumerable<IPersistent> PersistentParts() { yield return this; }

    /// <summary>The parts of this function to pause, in order (none for a plain function: it has no activity of its own).</summary>
    public virtual IEnumerable<IPausable> PausableParts() => [];

    public PciDeviceState CaptureState()
    {
        lock (SyncRoot)
        {
            var w = new StateWriter();
            SaveFunctionState(w);
            var bars = Bars.Select(b => new PciBarState((byte)b.Index, b.Size, b.Is64Bit, b.Address)).ToArray();
            return new PciDeviceState((byte[])_config.Clone(), bars, _intxAsserted, w.ToArray(), _rom?.BarSize ?? 0);
        }
    }

    public void SaveState(StateWriter writer) => CaptureState().Write(writer);

    public void RestoreState(StateReader reader, ushort version)
    {
        var state = PciDeviceState.Read(reader, version);
        lock (SyncRoot)
        {
            // The identity (ids, class, header layout read-only bits) must be the device's own: a different device
            // in this slot means the snapshot belongs to another configuration.
            for (int o = 0; o < ConfigSize; o++)
            {
                if (o >= 0x10 && o < 0x28) continue;
                if (o >= 0x30 && o < 0x34) continue; // the ROM BAR: checked by size below
                if ((state.Config[o] & ~_writeMask[o]) != (_config[o] & ~_writeMask[o]) && o != 0x06 && o != 0x07)
                    throw reader.Fail($"configuration byte 0x{o:x2} is 0x{state.Config[o]:x2}, read-only 0x{_config[o]:x2} in {Name}: the snapshot has another device in slot {Slot}");
            }
            var mine = Bars.Select(b => (b.Index, b.Size, b.Is64Bit)).ToArray();
            var theirs = state.Bars.Select(b => ((int)b.Index, b.Size, b.Is64Bit)).ToArray();
            if (!mine.SequenceEqual(theirs))
                throw reader.Fail($"the BARs ({string.Join(", ", theirs.Select(b => $"BAR{b.Item1} 0x{b.Size:x}"))}) differ from {Name}'s ({string.Join(", ", mine.Select(b => $"BAR{b.Index} 0x{b.Size:x}"))})");
            uint romSize = _rom?.BarSize ?? 0;
            if (state.RomBarSize != romSize)
                throw reader.Fail($"the expansion ROM BAR ({Describe(state.RomBarSize)}) differs from {Name}'s ({Describe(romSize)}): the snapshot was taken with {(state.RomBarSize == 0 ? "no" : "another")} ROM on this device");
            var function = new StateReader(state.Function, reader.RecordName);
            RestoreFunctionState(function);
            function.EnsureEnd();

            state.Config.AsSpan(0, 0x10).CopyTo(_config);
            state.Config.AsSpan(0x28).CopyTo(_config.AsSpan(0x28));
            for (int dw = 0; dw < 6; dw++) WriteBarDword(dw, BinaryPrimitives.ReadUInt32LittleEndian(state.Config.AsSpan(0x10 + 4 * dw)));
            WriteRomDword(BinaryPrimitives.ReadUInt32LittleEndian(state.Config.AsSpan(0x30)));
            UpdateBarMappings();
            _intxAsserted = state.IntxAsserted;
            SetIntxLineLevel(_intxAsserted && (Get16(0x04) & CommandIntxDisable) == 0);
        }
    }

    private static string Describe(uint romBarSize) => romBarSize == 0 ? "none" : $"0x{romBarSize:x} bytes";

    /// <summary>Function-specific state saved with the configuration space (called under the lock).</summary>
    protected virtual void SaveFunctionState(StateWriter writer) { }
    /// <summary>Reads what <see cref="SaveFunctionState"/> wrote (called under the lock, before config space is applied).</summary>
    protected virtual void RestoreFunctionState(StateReader reader) { }

    public virtual void Dispose() { }
}
