using System.Buffers.Binary;
using KvmPS.Devices.Pci;
using KvmPS.Interop;
using KvmPS.State;
using KvmPS.Vm;
using static KvmPS.Interop.Vfio;

namespace KvmPS.Devices.Passthrough;

/// <summary>A KVM memory slot over host memory that can be placed at a guest address, moved, or removed.</summary>
public interface IGuestMemorySlot : IDisposable
{
    /// <summary>Places the slot at <paramref name="guestAddress"/>, or removes it (null). Throws when KVM refuses (an overlap).</summary>
    void MapAt(ulong? guestAddress);
}

/// <summary>What a passthrough function needs from the machine beyond the transport.</summary>
/// <param name="Msi">Delivers the emulated MSI-X table's messages (KVM routes + irqfds).</param>
/// <param name="WatchEventFd">Runs a callback on the device I/O thread whenever an eventfd is signalled (null: not relayed, tests).</param>
/// <param name="CreateSlot">Makes a memory slot over a mapped BAR area (null: every access traps, tests).</param>
/// <param name="BindIntx">Binds INTx (GSI, trigger, resample eventfd) as a KVM level irqfd (null: the guest is told there is no pin).</param>
public sealed record PassthroughHost(IMsiController? Msi, Func<EventFdHandle, Action, IDisposable>? WatchEventFd, Func<nint, ulong, IGuestMemorySlot>? CreateSlot,
    Func<uint, EventFdHandle, EventFdHandle, IDisposable>? BindIntx = null);

/// <summary>
/// A PCI function passed through from a VFIO device (kernel VFIO or vfio-user, <see cref="IPassthroughTransport"/>).
/// BARs: the areas the device lets us map become KVM memory slots at the BAR's guest address, re-placed when the
/// guest moves the BAR or turns memory decoding off; everything else traps and is forwarded as region reads and
/// writes. The MSI-X table and PBA are always emulated here. A transport failure never reaches the guest as anything
/// but all-ones reads and dropped writes; the rest of the VM keeps running.
/// </summary>
public sealed partial class PassthroughDevice : PciDevice
{
    private readonly IPassthroughTransport _transport;
    private readonly PassthroughHost _host;
    private readonly Dictionary<int, List<MappedArea>> _areas = [];
    private readonly MsiXTable? _msix;
    private readonly MsiCapability? _msi;
    private readonly int _tableBar = -1, _pbaBar = -1;
    private readonly ulong _tableOffset, _pbaOffset;
    /// <summary>
    /// The device's vector eventfds, enough for MSI-X or MSI (the guest uses one at a time, as PCI wants): vector n of
    /// whichever is enabled signals the n-th.
    /// </summary>
    private readonly EventFdHandle[] _vectorEvents = [];
    /// <summary>Per vector: the I/O-loop watch that relays its eventfd into the emulated MSI-X table or MSI capability, while it is relayed.</summary>
    private readonly IDisposable?[] _relays = [];
    /// <summary>Per vector: the route its eventfd is bound to as a KVM irqfd, while it is delivered directly.</summary>
    private readonly IIrqfdRoute?[] _direct = [];
    private bool _disposed;
    /// <summary>A guest reboot took the transport for the next boot's function: <see cref="Dispose"/> leaves it open.</summary>
    private bool _transportKept;

    public override string Name => $"passthrough ({_transport.Name})";
    public IPassthroughTransport Transport => _transport;
    /// <summary>The emulated MSI-X table, or null when the device has no MSI-X capability.</summary>
    public MsiXTable? MsiX => _msix;
    /// <summary>The emulated MSI capability, or null when the device has none.</summary>
    public MsiCapability? Msi => _msi;
    /// <summary>Config space the guest can reach: 4096 bytes for a PCI Express function with extended space, else 256.</summary>
    public int ConfigBytes => _configBytes;

    private sealed class MappedArea(MmapArea area, nint host, IGuestMemorySlot? slot)
    {
        public MmapArea Area { get; } = area;
        public nint Host { get; } = host;
        public IGuestMemorySlot? Slot { get; } = slot;
        public bool InSlot { get; set; }
    }

    private PassthroughDevice(IPassthroughTransport transport, PassthroughHost host, byte[] config, byte intxPin, Func<int> msiVectors)
        : base(BinaryPrimitives.ReadUInt16LittleEndian(config), BinaryPrimitives.ReadUInt16LittleEndian(config.AsSpan(2)),
            (uint)(config[0x0B] << 16 | config[0x0A] << 8 | config[0x09]), config[0x08],
            BinaryPrimitives.ReadUInt16LittleEndian(config.AsSpan(0x2C)), BinaryPrimitives.ReadUInt16LittleEndian(config.AsSpan(0x2E)),
            interruptPin: intxPin)
    {
        _transport = transport;
        _host = host;
        int msiMax = ScanCapabilities(config, msiVectors);
        if (_msixCap >= 0)
        {
            int vectors = (BinaryPrimitives.ReadUInt16LittleEndian(config.AsSpan(_msixCap + 2)) & 0x7FF) + 1;
            uint table = BinaryPrimitives.ReadUInt32LittleEndian(config.AsSpan(_msixCap + 4));
            uint pba = BinaryPrimitives.ReadUInt32LittleEndian(config.AsSpan(_msixCap + 8));
            _msix = new MsiXTable(vectors, host.Msi);
            (_tableBar, _tableOffset) = ((int)(table & 7), table & ~7u);
            (_pbaBar, _pbaOffset) = ((int)(pba & 7), pba & ~7u);
        }
        if (_msiCap >= 0) _msi = new MsiCapability(BinaryPrimitives.ReadUInt16LittleEndian(config.AsSpan(_msiCap + 2)), host.Msi, msiMax);
        int eventFds = Math.Max(_msix?.VectorCount ?? 0, _msi?.CapableVectors ?? 0);
        _vectorEvents = new EventFdHandle[eventFds];
        _relays = new IDisposable?[eventFds];
        _direct = new IIrqfdRoute?[eventFds];
        for (int v = 0; v < eventFds; v++) _vectorEvents[v] = EventFdHandle.Create();
    }

    /// <summary>
    /// Builds the function from what the transport reports: config space, BARs (sizes from the region info, types from
    /// the device's BAR registers), the expansion ROM, MSI-X; maps guest RAM for DMA and resets the device when it can.
    /// Takes ownership of <paramref name="transport"/> (disposed if this fails). Errors name the device.
    /// <paramref name="alreadyReset"/>: the caller reset the device itself (a connection kept across a guest reboot), so
    /// it is not reset again.
    /// </summary>
    public static PassthroughDevice Create(IPassthroughTransport transport, GuestMemory? memory, PassthroughHost host, Action<string> log, bool alreadyReset = false)
    {
        PassthroughDevice? device = null;
        try
        {
            var info = transport.GetDeviceInfo();
            if (!info.IsPci) throw new PassthroughException(transport.Name, "the device is not a PCI device (VFIO_DEVICE_FLAGS_PCI is clear)");
            if (info.RegionCount <= VFIO_PCI_CONFIG_REGION_INDEX) throw new PassthroughException(transport.Name, $"the device has {info.RegionCount} regions; a PCI device has at least 8 (BARs, ROM, config)");
            var configRegion = transport.GetRegionInfo(VFIO_PCI_CONFIG_REGION_INDEX);
            if (configRegion.Size < ConfigSize) throw new PassthroughException(transport.Name, $"its config space has {configRegion.Size} bytes (at least 256)");
            var config = new byte[ConfigSize];
            transport.RegionRead(VFIO_PCI_CONFIG_REGION_INDEX, 0, config);
            if (BinaryPrimitives.ReadUInt16LittleEndian(config) is 0xFFFF or 0) throw new PassthroughException(transport.Name, "its config space reads as no device (vendor ID 0x0000/0xFFFF)");
            if ((config[0x0E] & 0x7F) != 0) throw new PassthroughException(transport.Name, $"header type {config[0x0E] & 0x7F}: only type-0 functions (endpoints) can be passed through");
            device = new PassthroughDevice(transport, host, config, IntxPinOf(transport, info, config, host), () => MsiVectorsOf(transport, info));
            device._configBytes = configRegion.Size >= ExtendedConfigSize ? ExtendedConfigSize : ConfigSize;
            device.DefineBars(config, log);
            device.AttachRom(log);
            if (memory is not null) transport.MapGuestMemory(memory);
            if (info.CanReset && !alreadyReset) transport.Reset();
            for (int v = 0; v < device._vectorEvents.Length; v++) device.StartRelay(v);
            log($"{device.Name}: {device.VendorId:x4}:{device.DeviceId:x4} class {device.ClassCode:x6}, {device.Bars.Count} BARs, " +
                $"{(device._msix is { } m ? $"{m.VectorCount} MSI-X vectors" : "no MSI-X")}, {(device._msi is { } msi ? $"{msi.CapableVectors} MSI vectors" : "no MSI")}, {(device.InterruptPin == 0 ? "no INTx" : "INTx")}, {device._configBytes}-byte config space, ROM {(device.ExpansionRom is null ? "none" : $"{device.ExpansionRom.Image.Length} bytes")}");
            return device;
        }
        catch (Exception e) when (e is not PassthroughException)
        {
            if (device is not null) device.Dispose(); else transport.Dispose();
            throw new PassthroughException(transport.Name, e.Message, e);
        }
        catch
        {
            if (device is not null) device.Dispose(); else transport.Dispose();
            throw;
        }
    }

    private void DefineBars(byte[] config, Action<string> log)
    {
        for (int i = 0; i < 6; i++)
        {
            var region = _transport.GetRegionInfo(VFIO_PCI_BAR0_REGION_INDEX + i);
            uint reg = BinaryPrimitives.ReadUInt32LittleEndian(config.AsSpan(0x10 + 4 * i));
            bool is64 = (reg & 0x7) == 0x4;
            if (region.Size == 0) continue;
            if ((reg & 1) != 0) { log($"{Name}: BAR{i} is an I/O BAR, which is not passed through"); continue; }
            ulong size = Math.Max(16, System.Numerics.BitOperations.RoundUpToPowerOf2(region.Size));
            if (is64 && i == 5) throw new PassthroughException(_transport.Name, "BAR5 claims to be 64-bit (no BAR6 for its upper half)");
            if (!is64 && size > 0x8000_0000) is64 = true; // too big for 32 bits: place it as a 64-bit BAR
            DefineBar(i, size, is64, prefetchable: (reg & 0x8) != 0);
            MapAreas(i, region, log);
            if (is64) i++; // the upper half's region is empty
        }
    }

    /// <summary>Maps the BAR's mmap-able areas (minus the MSI-X table and PBA pages, which must trap) into this process.</summary>
    private void MapAreas(int bar, PassthroughRegion region, Action<string> log)
    {
        var list = new List<MappedArea>();
        _areas[bar] = list;
        if (!region.Mappable) return;
        var excluded = new List<(ulong Start, ulong End)>();
        const ulong Page = 4096;
        if (_msix is not null)
        {
            if (_tableBar == bar) excluded.Add((_tableOffset & ~(Page - 1), (_tableOffset + (ulong)_msix.TableBytes + Page - 1) & ~(Page - 1)));
            if (_pbaBar == bar) excluded.Add((_pbaOffset & ~(Page - 1), (_pbaOffset + (ulong)_msix.PbaBytes + Page - 1) & ~(Page - 1)));
        }
        foreach (var area in region.Areas)
        {
            foreach (var piece in Subtract(area, excluded))
            {
                if (piece.Offset % Page != 0 || piece.Size % Page != 0) { log($"{Name}: BAR{bar} area 0x{piece.Offset:x}+0x{piece.Size:x} is not page-aligned; it traps"); continue; }
                nint host = Vfio.MapShared(region.MapFd!, (long)(region.MapOffset + piece.Offset), piece.Size, $"{_transport.Name} BAR{bar}");
                IGuestMemorySlot? slot = null;
                try { slot = _host.CreateSlot?.Invoke(host, piece.Size); }
                catch { Vfio.Unmap(host, piece.Size); throw; }
                list.Add(new MappedArea(piece, host, slot));
            }
        }
    }

    /// <summary>The parts of <paramref name="area"/> outside every excluded range.</summary>
    internal static IEnumerable<MmapArea> Subtract(MmapArea area, IReadOnlyList<(ulong Start, ulong End)> excluded)
    {
        var pieces = new List<MmapArea> { area };
        foreach (var (start, end) in excluded)
        {
            var next = new List<MmapArea>();
            foreach (var p in pieces)
            {
                ulong pEnd = p.Offset + p.Size;
                if (end <= p.Offset || start >= pEnd) { next.Add(p); continue; }
                if (start > p.Offset) next.Add(new MmapArea(p.Offset, start - p.Offset));
                if (end < pEnd) next.Add(new MmapArea(end, pEnd - end));
            }
            pieces = next;
        }
        return pieces;
    }

    private void AttachRom(Action<string> log)
    {
        var rom = _transport.GetRegionInfo(VFIO_PCI_ROM_REGION_INDEX);
        if (rom.Size == 0 || !rom.Readable) return;
        if (rom.Size > (ulong)PciExpansionRom.MaxBytes) { log($"{Name}: its expansion ROM of {rom.Size} bytes is over 1 MiB; not exposed"); return; }
        var image = new byte[rom.Size];
        _transport.RegionRead(VFIO_PCI_ROM_REGION_INDEX, 0, image);
        try { AttachExpansionRom(new PciExpansionRom(image, $"{_transport.Name} ROM")); }
        catch (ExpansionRomException e) { log($"{Name}: expansion ROM not exposed: {e.Message}"); }
    }

    // ---- BARs ----
    protected override void OnBarMapped(PciBar bar)
    {
        if (_transport.Failed is not null || !_areas.TryGetValue(bar.Index, out var areas)) return;
        foreach (var a in areas)
        {
            if (a.Slot is null) continue;
            try
            {
                a.Slot.MapAt(bar.MappedAt!.Value + a.Area.Offset);
                a.InSlot = true;
            }
            catch (Exception e) when (e is IOException or InvalidOperationException)
            {
                // Over RAM or another slot (a guest placing the BAR badly): the area traps, as if it could not be mapped.
                Log($"{Name}: BAR{bar.Index} area at 0x{bar.MappedAt!.Value + a.Area.Offset:x} not mapped into the guest: {e.Message}");
            }
        }
    }

    protected override void OnBarUnmapped(PciBar bar)
    {
        if (_areas.TryGetValue(bar.Index, out var areas)) RemoveSlots(bar.Index, areas);
    }

    /// <summary>Takes every mapped BAR area out of the guest (a failed device).</summary>
    private void RemoveSlots()
    {
        foreach (var (index, areas) in _areas) RemoveSlots(index, areas);
    }

    private void RemoveSlots(int barIndex, List<MappedArea> areas)
    {
        foreach (var a in areas)
        {
            if (!a.InSlot) continue;
            try { a.Slot!.MapAt(null); }
            catch (Exception e) when (e is IOException or InvalidOperationException) { Log($"{Name}: BAR{barIndex}: removing its slot failed: {e.Message}"); }
            a.InSlot = false;
        }
    }

    private bool InTable(PciBar bar, ulong offset, int length) =>
        _msix is not null && bar.Index == _tableBar && offset >= _tableOffset && offset + (ulong)length <= _tableOffset + (ulong)_msix.TableBytes;

    private bool InPba(PciBar bar, ulong offset, int length) =>
        _msix is not null && bar.Index == _pbaBar && offset >= _pbaOffset && offset + (ulong)length <= _pbaOffset + (ulong)_msix.PbaBytes;

    protected override void BarRead(PciBar bar, ulong offset, Span<byte> data)
    {
        if (Gone()) { data.Fill(0xFF); return; }
        if (InTable(bar, offset, data.Length)) { _msix!.TableRead(offset - _tableOffset, data); return; }
        if (InPba(bar, offset, data.Length)) { _msix!.PbaRead(offset - _pbaOffset, data); return; }
        _transport.RegionRead(VFIO_PCI_BAR0_REGION_INDEX + bar.Index, offset, data); // a failure reads as all-ones (PciDevice)
    }

    protected override void BarWrite(PciBar bar, ulong offset, ReadOnlySpan<byte> data)
    {
        if (Gone()) return;
        if (InTable(bar, offset, data.Length))
        {
            _msix!.TableWrite(offset - _tableOffset, data);
            UpdateDirectDelivery();
            return;
        }
        if (InPba(bar, offset, data.Length)) return; // the PBA is read-only
        _transport.RegionWrite(VFIO_PCI_BAR0_REGION_INDEX + bar.Index, offset, data);
    }

    // ---- interrupts ----
    /// <summary>
    /// The mechanism the device's vector eventfds feed now: MSI-X while enabled, else MSI while enabled (PCI leaves both
    /// at once undefined; MSI-X wins here, so a guest that enables MSI over MSI-X keeps getting MSI-X), else none.
    /// </summary>
    private IMsiVectors? ActiveVectors => _msix is { Enabled: true } ? _msix : _msi is { Enabled: true } ? _msi : null;

    /// <summary>
    /// The device signalled vector <paramref name="vector"/> (the I/O loop consumed its eventfd): delivered, or latched
    /// while masked; with neither MSI nor MSI-X on, latched in the MSI-X PBA when there is one.
    /// </summary>
    internal void OnVectorSignalled(int vector)
    {
        lock (SyncRoot)
        {
            if (_disposed) return;
            var target = ActiveVectors ?? (IMsiVectors?)_msix;
            if (target is null) return;
            try { target.Notify(vector); }
            catch (Exception e) { Log($"{Name}: {(target == _msi ? "MSI" : "MSI-X")} vector {vector}: {e.Message}"); }
        }
    }

    /// <summary>Vectors whose eventfd is bound to their KVM route right now (tests, diagnostics).</summary>
    public int DirectVectors { get { lock (SyncRoot) return _direct.Count(r => r is not null); } }

    /// <summary>
    /// Puts each vector on the path its state calls for (under the lock, after every MSI-X table write or MSI/MSI-X
    /// capability write). Deliverable with a route KVM accepted: the device's eventfd is bound to the route's GSI
    /// (KVM_IRQFD), so its signal goes straight into KVM. Otherwise (masked, off, no route): the I/O loop relays the
    /// eventfd into the emulated table or capability, which latches the pending bit. The relay stops before the bind
    /// and starts after the unbind; KVM takes a count already in the eventfd at bind time, epoll sees one at
    /// registration: none is lost.
    /// </summary>
    private void UpdateDirectDelivery()
    {
        if (_disposed) return;
        var active = ActiveVectors;
        for (int v = 0; v < _vectorEvents.Length; v++)
        {
            IIrqfdRoute? want = null;
            try
            {
                if (active is not null && v < active.VectorCount && active.IsDeliverable(v) && _host.WatchEventFd is not null
                    && active.RouteFor(v) is IIrqfdRoute { Ready: true } route) want = route;
            }
            catch (Exception e) { Log($"{Name}: vector {v}: no route: {e.Message}"); } // e.g. no GSI left: relayed
            if (want == _direct[v]) continue;
            if (_direct[v] is { } bound)
            {
                try { bound.Unbind(_vectorEvents[v]); }
                catch (Exception e) { Log($"{Name}: vector {v}: irqfd unbind: {e.Message}"); }
                _direct[v] = null;
                StartRelay(v);
            }
            if (want is null) continue;
            StopRelay(v);
            try
            {
                want.Bind(_vectorEvents[v]);
                _direct[v] = want;
            }
            catch (Exception e)
            {
                Log($"{Name}: vector {v}: irqfd bind: {e.Message}; relayed instead");
                StartRelay(v);
            }
        }
    }

    private void StartRelay(int v)
    {
        if (_relays[v] is not null || _host.WatchEventFd is not { } watch) return;
        int vector = v;
        _relays[v] = watch(_vectorEvents[v], () => OnVectorSignalled(vector));
    }

    private void StopRelay(int v)
    {
        _relays[v]?.Dispose();
        _relays[v] = null;
    }

    /// <summary>
    /// A guest reboot keeps the connection for the next boot's function (VmmHost.KeepFilesForReboot): disposing this
    /// function then still turns its interrupts off at the device, but leaves the transport open. Returns the transport.
    /// </summary>
    public IPassthroughTransport KeepTransport()
    {
        lock (SyncRoot)
        {
            _transportKept = true;
            return _transport;
        }
    }

    // ---- state ----
    /// <summary>Like real VFIO devices without migration support: no snapshot, no migration, named by type.</summary>
    protected override void SaveFunctionState(StateWriter writer) => throw new PassthroughNotMigratableException(_transport.Name);
    protected override void RestoreFunctionState(StateReader reader) => throw new PassthroughNotMigratableException(_transport.Name);

    public override void Dispose()
    {
        lock (SyncRoot)
        {
            if (_disposed) return;
            _disposed = true;
            for (int v = 0; v < _vectorEvents.Length; v++)
            {
                StopRelay(v);
                try { _direct[v]?.Unbind(_vectorEvents[v]); } catch (Exception e) when (e is IOException or ObjectDisposedException) { }
                _direct[v] = null;
            }
            if (_transport.Failed is null) LeaveIrqMode(); // the device may be gone already
            DisposeIntx();
            _msix?.Dispose();
            _msi?.Dispose();
            foreach (var areas in _areas.Values)
                foreach (var a in areas)
                {
                    try { if (a.InSlot) a.Slot!.MapAt(null); } catch (Exception e) when (e is IOException or InvalidOperationException) { }
                    a.Slot?.Dispose();
                    Vfio.Unmap(a.Host, a.Area.Size);
                }
            _areas.Clear();
            foreach (var e in _vectorEvents) e.Dispose();
            if (!_transportKept) _transport.Dispose();
        }
    }
}
