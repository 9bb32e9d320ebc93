using System.Buffers.Binary;
using KvmPS.Devices.Pci;
using KvmPS.State;
using KvmPS.Vm;

namespace KvmPS.Devices.Virtio;

/// <summary>Attaches a handler to guest writes of one MMIO address without a vCPU exit (KVM_IOEVENTFD); null when unavailable.</summary>
public interface IIoEventRegistrar
{
    IDisposable? TryRegisterMmioWrite(ulong address, uint length, Action onWrite);
}

/// <summary>
/// virtio 1.x modern PCI transport ("Virtio Over PCI Bus"): vendor 0x1AF4, device 0x1040 + type, revision 1.
/// Everything lives in one 32-bit memory BAR (BAR0, so guests that map only the low 4 GiB reach it):
/// <code>
///   0x0000 common configuration   (VIRTIO_PCI_CAP_COMMON_CFG)
///   0x1000 ISR status              (VIRTIO_PCI_CAP_ISR_CFG; reading clears it and deasserts INTx)
///   0x2000 device configuration    (VIRTIO_PCI_CAP_DEVICE_CFG, when the device has any)
///   0x3000 notifications           (VIRTIO_PCI_CAP_NOTIFY_CFG; queue q at 0x3000 + 4·q, notify_off_multiplier 4)
///   0x4000 MSI-X table, 0x6000 MSI-X PBA (vectors: one per queue + one for configuration changes)
/// </code>
/// plus a VIRTIO_PCI_CAP_PCI_CFG window in config space. Queue notifications arrive through ioeventfds (one per
/// queue address, processed on the I/O thread) or, without them, as ordinary MMIO writes on the vCPU thread.
/// Interrupts go out as MSI-X when the driver enabled it, else as INTx with the ISR bits.
/// </summary>
public sealed partial class VirtioPciTransport : PciDevice, IVirtioContext, IPausable
{
    public const ushort VirtioVendorId = 0x1AF4, DeviceIdBase = 0x1040, SubsystemId = 0x1100;
    public const ulong BarSize = 0x8000;
    public const ulong CommonOffset = 0x0000, IsrOffset = 0x1000, DeviceCfgOffset = 0x2000, NotifyOffset = 0x3000, MsixTableOffset = 0x4000, MsixPbaOffset = 0x6000;
    public const uint NotifyMultiplier = 4;
    public const int CommonCfgLength = 0x38;
    public const ushort NoVector = 0xFFFF;
    public const byte CapCommon = 1, CapNotify = 2, CapIsr = 3, CapDevice = 4, CapPciCfg = 5;

    private sealed class QueueState
    {
        public ushort Size, MsixVector = NoVector;
        public bool Enabled;
        public ulong Desc, Driver, Device;
        public VirtQueue? Queue;
    }

    private readonly IVirtioDevice _device;
    private readonly GuestMemory _memory;
    private readonly IIoEventRegistrar? _ioEvents;
    private readonly MsiXTable _msix;
    private readonly QueueState[] _queues;
    private readonly PciBar _bar;
    private readonly int _msixCap, _pciCfgCap;
    private readonly List<IDisposable> _notifyHandlers = new();
    private uint _deviceFeatureSelect, _driverFeatureSelect;
    private ulong _driverFeatures;
    private ushort _msixConfig = NoVector, _queueSelect;
    private byte _status, _configGeneration, _isr;
    private bool _activated;
    private bool _disposed; // set under SyncRoot: no queue processing, interrupts or device calls after it
    private readonly Action<string> _errorLog;

    public IVirtioDevice Device => _device;

    /// <summary>Attaches <paramref name="rom"/> (when there is one) as the function's expansion ROM; returns the transport.</summary>
    public static VirtioPciTransport WithRom(VirtioPciTransport transport, PciExpansionRom? rom)
    {
        if (rom is not null) transport.AttachExpansionRom(rom);
        return transport;
    }
    public override string Name => _device.Name;
    public ulong OfferedFeatures { get; }
    public ulong NegotiatedFeatures => (_status & VirtioStatus.FeaturesOk) != 0 ? _driverFeatures : 0;
    public byte Status { get { lock (SyncRoot) return _status; } }
    public bool NeedsReset => (Status & VirtioStatus.NeedsReset) != 0;
    public MsiXTable MsiX => _msix;
    public GuestMemory Memory => _memory;
    /// <summary>True while queue notifications arrive through ioeventfds rather than MMIO exits.</summary>
    public bool UsingIoEventFds { get { lock (SyncRoot) return _notifyHandlers.Count > 0; } }
    /// <summary>Receives error messages (malformed rings etc.); defaults to the bus log.</summary>
    public Action<string>? ErrorLog { get; set; }

    public VirtioPciTransport(IVirtioDevice device, GuestMemory memory, IMsiController? msi = null, IIoEventRegistrar? ioEvents = null)
        : base(VirtioVendorId, (ushort)(DeviceIdBase + device.DeviceType), device.PciClassCode, 1, VirtioVendorId, SubsystemId, interruptPin: 1)
    {
        if (device.QueueCount < 1 || device.QueueCount > 1024) throw new ArgumentOutOfRangeException(nameof(device), "a virtio device needs 1-1024 queues here.");
        if (device.ConfigSize > 0x1000) throw new ArgumentOutOfRangeException(nameof(device), "device configuration larger than 4 KiB.");
        _device = device;
        _memory = memory;
        _ioEvents = ioEvents;
        OfferedFeatures = device.DeviceFeatures | VirtioFeatures.Version1 | VirtioFeatures.RingEventIdx | VirtioFeatures.RingIndirectDesc;
        _queues = new QueueState[device.QueueCount];
        for (int i = 0; i < _queues.Length; i++) _queues[i] = new QueueState { Size = device.MaxQueueSize(i) };
        _msix = new MsiXTable(device.QueueCount + 1, msi);
        _bar = DefineBar(0, BarSize);
        // Guest-triggered errors (bad rings, refused features) are rate-limited: a guest can repeat them at exit rate.
        _errorLog = new DeviceLog(m => (ErrorLog ?? (x => Bus?.Log(x)))(m), device.Name).Write;

        // MSI-X capability: message control (enable + function mask writable), table and PBA in BAR0.
        Span<byte> msixBody = stackalloc byte[10];
        BinaryPrimitives.WriteUInt16LittleEndian(msixBody, (ushort)(_msix.VectorCount - 1));
        BinaryPrimitives.WriteUInt32LittleEndian(msixBody[2..], (uint)MsixTableOffset | 0);
        BinaryPrimitives.WriteUInt32LittleEndian(msixBody[6..], (uint)MsixPbaOffset | 0);
        _msixCap = AddCapability(CapIdMsiX, msixBody, [0x00, 0xC0]);

        AddVirtioCap(CapCommon, CommonOffset, CommonCfgLength);
        AddVirtioCap(CapNotify, NotifyOffset, (uint)(NotifyMultiplier * _queues.Length), NotifyMultiplier);
        AddVirtioCap(CapIsr, IsrOffset, 4);
        if (device.ConfigSize > 0) AddVirtioCap(CapDevice, DeviceCfgOffset, (uint)device.ConfigSize);
        // VIRTIO_PCI_CAP_PCI_CFG: bar (byte 4), offset (8), length (12) and data (16) are writable.
        Span<byte> mask = stackalloc byte[18];
        mask[2] = 0xFF;
        mask.Slice(6, 12).Fill(0xFF);
        _pciCfgCap = AddVirtioCap(CapPciCfg, 0, 0, extra: 4, writeMask: mask);
    }

    private int AddVirtioCap(byte type, ulong offset, uint length, uint? multiplier = null, int extra = 0, ReadOnlySpan<byte> writeMask = default)
    {
        int capLen = 16 + (multiplier.HasValue ? 4 : 0) + extra;
        Span<byte> body = stackalloc byte[capLen - 2];
        body[0] = (byte)capLen;
        body[1] = type;
        body[2] = type == CapPciCfg ? (byte)0 : (byte)_bar.Index;
        BinaryPrimitives.WriteUInt32LittleEndian(body[6..], (uint)offset);
        BinaryPrimitives.WriteUInt32LittleEndian(body[10..], length);
        if (multiplier is uint m) BinaryPrimitives.WriteUInt32LittleEndian(body[14..], m);
        return AddCapability(CapIdVendor, body, writeMask);
    }

    // ---- config space hooks: MSI-X control and the PCI_CFG access window ----
    protected override void OnConfigWrite(int offset, int length)
    {
        if (Overlaps(offset, length, _msixCap + 2, 2))
        {
            ushort control = Get16(_msixCap + 2);
            bool wasEnabled = _msix.Enabled;
            _msix.SetControl((control & 0x8000) != 0, (control & 0x4000) != 0);
            if (_msix.Enabled && !wasEnabled) SetIntx(false);
        }
        if (Overlaps(offset, length, _pciCfgCap + 16, 4) && PciCfgWindow(out ulong off, out int len))
        {
            Span<byte> data = stackalloc byte[4];
            for (int i = 0; i < 4; i++) data[i] = Get8(_pciCfgCap + 16 + i);
            BarWrite(_bar, off, data[..len]);
        }
    }

    protected override void OnConfigRead(int offset, Span<byte> data)
    {
        if (!Overlaps(offset, data.Length, _pciCfgCap + 16, 4) || !PciCfgWindow(out ulong off, out int len)) return;
        Span<byte> window = stackalloc byte[4];
        BarRead(_bar, off, window[..len]);
        for (int i = 0; i < data.Length; i++)
        {
            int k = offset + i - (_pciCfgCap + 16);
            if (k >= 0 && k < len) data[i] = window[k];
        }
    }

    private bool PciCfgWindow(out ulong offset, out int length)
    {
        offset = Get32(_pciCfgCap + 8);
        length = (int)Get32(_pciCfgCap + 12);
        return Get8(_pciCfgCap + 4) == _bar.Index && length is 1 or 2 or 4 && offset + (ulong)length <= BarSize;
    }

    private static bool Overlaps(int offset, int length, int at, int size) => offset < at + size && at < offset + length;

    // ---- BAR0 ----
    protected override void BarRead(PciBar bar, ulong offset, Span<byte> data)
    {
        data.Clear();
        ulong end = offset + (ulong)data.Length;
        if (end <= CommonOffset + CommonCfgLength)
        {
            Span<byte> common = stackalloc byte[CommonCfgLength];
            ComposeCommon(common);
            common.Slice((int)offset, data.Length).CopyTo(data);
        }
        else if (offset >= IsrOffset && end <= IsrOffset + 4)
        {
            if (offset == IsrOffset)
            {
                data[0] = _isr; // reading ISR status acknowledges it
                _isr = 0;
                SetIntx(false);
            }
        }
        else if (offset >= DeviceCfgOffset && end <= DeviceCfgOffset + (ulong)_device.ConfigSize)
            _device.ReadConfig((int)(offset - DeviceCfgOffset), data);
        else if (offset >= MsixTableOffset && end <= MsixTableOffset + (ulong)_msix.TableBytes)
            _msix.TableRead(offset - MsixTableOffset, data);
        else if (offset >= MsixPbaOffset && end <= MsixPbaOffset + (ulong)_msix.PbaBytes)
            _msix.PbaRead(offset - MsixPbaOffset, data);
    }

    protected override void BarWrite(PciBar bar, ulong offset, ReadOnlySpan<byte> data)
    {
        if (_disposed) return; // no re-activation (which would hand the device this transport again) after Dispose
        ulong end = offset + (ulong)data.Length;
        if (end <= CommonOffset + CommonCfgLength) WriteCommon((int)offset, data);
        else if (offset >= NotifyOffset && end <= NotifyOffset + NotifyMultiplier * (ulong)_queues.Length)
            ProcessNotify((int)((offset - NotifyOffset) / NotifyMultiplier)); // no ioeventfd: handled on this vCPU thread
        else if (offset >= DeviceCfgOffset && end <= DeviceCfgOffset + (ulong)_device.ConfigSize)
            _device.WriteConfig((int)(offset - DeviceCfgOffset), data);
        else if (offset >= MsixTableOffset && end <= MsixTableOffset + (ulong)_msix.TableBytes)
            _msix.TableWrite(offset - MsixTableOffset, data);
    }

    private QueueState? SelectedQueue => _queueSelect < _queues.Length ? _queues[_queueSelect] : null;

    private void ComposeCommon(Span<byte> c)
    {
        c.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(c[0x00..], _deviceFeatureSelect);
        BinaryPrimitives.WriteUInt32LittleEndian(c[0x04..], _deviceFeatureSelect switch { 0 => (uint)OfferedFeatures, 1 => (uint)(OfferedFeatures >> 32), _ => 0 });
        BinaryPrimitives.WriteUInt32LittleEndian(c[0x08..], _driverFeatureSelect);
        BinaryPrimitives.WriteUInt32LittleEndian(c[0x0C..], _driverFeatureSelect switch { 0 => (uint)_driverFeatures, 1 => (uint)(_driverFeatures >> 32), _ => 0 });
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x10..], _msixConfig);
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x12..], (ushort)_queues.Length);
        c[0x14] = _status;
        c[0x15] = _configGeneration;
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x16..], _queueSelect);
        if (SelectedQueue is { } q)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(c[0x18..], q.Size);
            BinaryPrimitives.WriteUInt16LittleEndian(c[0x1A..], q.MsixVector);
            BinaryPrimitives.WriteUInt16LittleEndian(c[0x1C..], q.Enabled ? (ushort)1 : (ushort)0);
            BinaryPrimitives.WriteUInt16LittleEndian(c[0x1E..], _queueSelect); // queue_notify_off = index
            BinaryPrimitives.WriteUInt64LittleEndian(c[0x20..], q.Desc);
            BinaryPrimitives.WriteUInt64LittleEndian(c[0x28..], q.Driver);
            BinaryPrimitives.WriteUInt64LittleEndian(c[0x30..], q.Device);
        }
    }

    private static readonly (int Offset, int Size)[] CommonFields =
    [
        (0x00, 4), (0x04, 4), (0x08, 4), (0x0C, 4), (0x10, 2), (0x12, 2), (0x14, 1), (0x15, 1), (0x16, 2),
        (0x18, 2), (0x1A, 2), (0x1C, 2), (0x1E, 2), (0x20, 8), (0x28, 8), (0x30, 8),
    ];

    /// <summary>Applies a write of any width: each field it touches gets its current value with the written bytes merged in.</summary>
    private void WriteCommon(int offset, ReadOnlySpan<byte> data)
    {
        Span<byte> c = stackalloc byte[CommonCfgLength];
        ComposeCommon(c);
        data.CopyTo(c[offset..]);
        foreach (var (at, size) in CommonFields)
        {
            if (!Overlaps(offset, data.Length, at, size)) continue;
            ulong v = size switch { 1 => c[at], 2 => BinaryPrimitives.ReadUInt16LittleEndian(c[at..]), 4 => BinaryPrimitives.ReadUInt32LittleEndian(c[at..]), _ => BinaryPrimitives.ReadUInt64LittleEndian(c[at..]) };
            ApplyCommonField(at, v);
        }
    }

    private void ApplyCommonField(int field, ulong v)
    {
        bool featuresLocked = (_status & VirtioStatus.FeaturesOk) != 0;
        var q = SelectedQueue;
        bool queueLocked = q is null || q.Enabled;
        switch (field)
        {
            case 0x00: _deviceFeatureSelect = (uint)v; break;
            case 0x08: _driverFeatureSelect = (uint)v; break;
            case 0x0C:
                if (featuresLocked) break;
                if (_driverFeatureSelect == 0) _driverFeatures = (_driverFeatures & ~0xFFFF_FFFFUL) | (uint)v;
                else if (_driverFeatureSelect == 1) _driverFeatures = (_driverFeatures & 0xFFFF_FFFFUL) | (v << 32);
                break;
            case 0x10: _msixConfig = v < (ulong)_msix.VectorCount ? (ushort)v : NoVector; break;
            case 0x14: WriteStatus((byte)v); break;
            case 0x16: _queueSelect = (ushort)v; break;
            case 0x18:
                if (!queueLocked) q!.Size = (ushort)v; // validated when the queue is enabled
                break;
            case 0x1A:
                if (q is not null) q.MsixVector = v < (ulong)_msix.VectorCount ? (ushort)v : NoVector;
                break;
            case 0x1C:
                if (!queueLocked && v == 1) EnableQueue(_queueSelect, q!);
                break;
            case 0x20: if (!queueLocked) q!.Desc = v; break;
            case 0x28: if (!queueLocked) q!.Driver = v; break;
            case 0x30: if (!queueLocked) q!.Device = v; break;
        }
    }

    private void WriteStatus(byte value)
    {
        if (value == 0) { ResetDevice(); return; }
        byte old = _status;
        byte next = (byte)(value | (old & VirtioStatus.NeedsReset)); // only a reset clears NEEDS_RESET
        if ((next & VirtioStatus.FeaturesOk) != 0 && (old & VirtioStatus.FeaturesOk) == 0)
        {
            ulong unsupported = _driverFeatures & ~OfferedFeatures;
            if (unsupported != 0 || (_driverFeatures & VirtioFeatures.Version1) == 0)
            {
                next &= unchecked((byte)~VirtioStatus.FeaturesOk); // refuse: the driver sees FEATURES_OK clear on re-read
                LogError($"{Name}: feature negotiation refused (driver features 0x{_driverFeatures:x}, offered 0x{OfferedFeatures:x})");
            }
        }
        _status = next;
        if ((next & VirtioStatus.DriverOk) != 0 && (old & VirtioStatus.DriverOk) == 0 && !_activated)
        {
            _activated = true;
            _device.Activate(this);
            for (int i = 0; i < _queues.Length; i++) if (_queues[i].Queue is { Pending: > 0 }) ProcessQueueLocked(i); // buffers made available before DRIVER_OK
        }
    }

    private void EnableQueue(int index, QueueState q)
    {
        var vq = VirtQueue.TryCreate(_memory, q.Size, q.Desc, q.Driver, q.Device,
            (_driverFeatures & VirtioFeatures.RingEventIdx) != 0, (_driverFeatures & VirtioFeatures.RingIndirectDesc) != 0, out string? error);
        if (vq is null || q.Size > _device.MaxQueueSize(index))
        {
            Fail($"queue {index}: {error ?? $"size {q.Size} exceeds the maximum {_device.MaxQueueSize(index)}"}");
            return;
        }
        q.Queue = vq;
        q.Enabled = true;
    }

    private void ResetDevice()
    {
        _status = 0;
        _activated = false;
        _driverFeatures = 0;
        _deviceFeatureSelect = _driverFeatureSelect = 0;
        _queueSelect = 0;
        _msixConfig = NoVector;
        _isr = 0;
        SetIntx(false);
        for (int i = 0; i < _queues.Length; i++) _queues[i] = new QueueState { Size = _device.MaxQueueSize(i) };
        try { _device.Reset(); } catch (Exception e) { LogError($"{Name}: reset failed: {e.Message}"); }
    }

    // ---- notifications ----
    protected override void OnBarMapped(PciBar bar)
    {
        if (_disposed || _ioEvents is null || bar.MappedAt is not ulong at) return;
        for (int i = 0; i < _queues.Length; i++)
        {
            int queue = i;
            var handle = _ioEvents.TryRegisterMmioWrite(at + NotifyOffset + NotifyMultiplier * (ulong)i, 2, () => HandleNotify(queue));
            if (handle is null) break; // no ioeventfd: notifications stay MMIO exits
            _notifyHandlers.Add(handle);
        }
    }

    protected override void OnBarUnmapped(PciBar bar)
    {
        foreach (var h in _notifyHandlers) h.Dispose();
        _notifyHandlers.Clear();
    }

    /// <summary>Queue notification from the I/O thread (ioeventfd) or a test.</summary>
    public void HandleNotify(int queue)
    {
        try
        {
            // Late callers (pool-thread kicks, timers, control requests holding an old machine) may arrive after
            // Dispose, while guest memory is being unmapped: the disposed check under the lock turns them away.
            lock (SyncRoot)
            {
                if (_disposed) return;
                if (_paused) { DeferNotify(queue); return; }
                ProcessQueueLocked(queue);
            }
        }
        catch (Exception e)
        {
            LogError($"{Name}: queue {queue}: {e.GetType().Name}: {e.Message}");
        }
    }

    private void ProcessNotify(int queue)
    {
        if (_paused) DeferNotify(queue);
        else ProcessQueueLocked(queue);
    }

    private void ProcessQueueLocked(int index)
    {
        if (_disposed || (uint)index >= (uint)_queues.Length) return;
        if ((_status & VirtioStatus.DriverOk) == 0 || (_status & VirtioStatus.NeedsReset) != 0) return;
        var q = _queues[index].Queue;
        if (q is null || q.IsBroken) return;
        try
        {
            _device.ProcessQueue(this, index);
        }
        catch (Exception e)
        {
            Fail($"queue {index}: device error {e.GetType().Name}: {e.Message}");
            return;
        }
        if (q.IsBroken) Fail($"queue {index}: {q.Error}");
    }

    // ---- IVirtioContext ----
    public VirtQueue? Queue(int index) => (uint)index < (uint)_queues.Length && _queues[index].Enabled ? _queues[index].Queue : null;

    public void NotifyUsed(int queue)
    {
        if (_disposed || Queue(queue) is not { } q || !q.ShouldInterrupt()) return;
        if (_msix.Enabled)
        {
            ushort v = _queues[queue].MsixVector;
            if (v != NoVector) SendMsiX(v);
        }
        else
        {
            _isr |= 1;
            SetIntx(true);
        }
    }

    public void ConfigChanged()
    {
        _configGeneration++;
        SendConfigInterrupt();
    }

    private void SendConfigInterrupt()
    {
        if (_disposed) return;
        _isr |= 2;
        if (_msix.Enabled) { if (_msixConfig != NoVector) SendMsiX(_msixConfig); }
        else SetIntx(true);
    }

    /// <summary>A host-side delivery failure (KVM refusing a route) is logged; it is not the driver's fault.</summary>
    private void SendMsiX(int vector)
    {
        try { _msix.Notify(vector); }
        catch (Exception e) { LogError($"{Name}: MSI-X vector {vector}: {e.Message}"); }
    }

    public void Fail(string reason)
    {
        if ((_status & VirtioStatus.NeedsReset) != 0) return;
        _status |= VirtioStatus.NeedsReset;
        LogError($"{Name} (PCI slot {Slot}): {reason}; device needs reset");
        if ((_status & VirtioStatus.DriverOk) != 0) SendConfigInterrupt();
    }

    void IVirtioContext.Log(string message) => Log($"{Name}: {message}");

    private void LogError(string message) => _errorLog(message);

    /// <summary>True once <see cref="Dispose"/> has begun: the rings are never walked again.</summary>
    public bool IsDisposed { get { lock (SyncRoot) return _disposed; } }

    /// <summary>
    /// Stops all queue processing (under the lock, so it waits for any in progress), forgets the rings, releases
    /// ioeventfds and MSI routes, then disposes the device outside the lock: a device may wait there for its own
    /// threads or timers, which may be blocked on this lock (they find the transport disposed and return).
    /// </summary>
    public override void Dispose()
    {
        lock (SyncRoot)
        {
            if (_disposed) return;
            _disposed = true;
            _status = 0;
            _activated = false;
            _isr = 0;
            for (int i = 0; i < _queues.Length; i++) _queues[i] = new QueueState { Size = _device.MaxQueueSize(i) };
            foreach (var h in _notifyHandlers) h.Dispose();
            _notifyHandlers.Clear();
            _msix.Dispose();
        }
        _device.Dispose();
    }
}
