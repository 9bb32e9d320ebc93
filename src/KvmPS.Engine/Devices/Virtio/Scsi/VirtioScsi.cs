using System.Buffers.Binary;
using System.Text.Json;
using KvmPS.Contract;
using KvmPS.Devices.Config;
using KvmPS.State;

namespace KvmPS.Devices.Virtio.Scsi;

/// <summary>
/// virtio-scsi host (device type 8, virtio 1.x section 5.6) with one CD-ROM logical unit, target 0 LUN 0
/// (<see cref="ScsiCdrom"/>). Queues: 0 control (task management, asynchronous-notification queries), 1 event (the
/// driver's empty buffers, filled with VIRTIO_SCSI_T_PARAM_CHANGE when the medium changes and the driver accepted
/// VIRTIO_SCSI_F_CHANGE), 2 request. A request chain is a device-readable header (lun[8], tag, task_attr, prio, crn,
/// cdb[cdb_size]) and data-out, then a device-writable response (sense_len, resid, status_qualifier, status,
/// response, sense[sense_size]) and data-in; cdb_size and sense_size are what the driver last wrote to the
/// configuration (32 and 96 by default). Any other target or LUN answers VIRTIO_SCSI_S_BAD_TARGET.
/// </summary>
/// <remarks>
/// Requests run to completion on the thread that processes the queue, under the transport's lock. The drive's state
/// is also changed by <c>media.change</c> on the control thread: <see cref="_lock"/> serializes the two (it is taken
/// inside the transport's lock, never around it).
/// </remarks>
public sealed class VirtioScsi : IVirtioDevice, IDeviceControl, IPersistent
{
    public const ushort QueueSize = 128;
    public const int ControlQueue = 0, EventQueue = 1, RequestQueue = 2;
    public const ulong FeatureChange = 1UL << 2; // VIRTIO_SCSI_F_CHANGE
    public const int ConfigBytes = 36;
    public const uint DefaultCdbSize = 32, DefaultSenseSize = 96, MaxCdbOrSenseSize = 256;
    /// <summary>max_sectors (512-byte units) the driver should use per request: 1 MiB.</summary>
    public const uint MaxSectors = 2048;
    public const int EventBytes = 16, MaxQueuedEvents = 8;
    // Response codes (5.6.6.1).
    public const byte ResponseOk = 0, ResponseBadTarget = 3, ResponseFunctionComplete = 0, ResponseFunctionRejected = 11;
    // Control request types and event types.
    public const uint ControlTmf = 0, ControlAnQuery = 1, ControlAnSubscribe = 2;
    public const uint EventParamChange = 3, EventsMissed = 0x8000_0000;

    private readonly object _lock = new();
    private readonly ScsiCdrom _lun;
    private readonly DescriptorChain _chain = new();
    private readonly byte[] _data = new byte[ScsiCdrom.MaxResponseBytes];
    private readonly HostConfigNotice _kick = new();
    private readonly Queue<uint> _events = new(); // PARAM_CHANGE reasons (ASC | ASCQ << 8) not yet delivered
    private readonly Action<string> _log;
    private bool _eventsMissed, _changeEvents;
    private uint _cdbSize = DefaultCdbSize, _senseSize = DefaultSenseSize;

    public VirtioScsi(IsoImage? image, Action<string>? log = null)
    {
        _lun = new ScsiCdrom(image);
        _log = log ?? (_ => { });
    }

    public string Name => "virtio-scsi";
    public ushort DeviceType => 8;
    public uint PciClassCode => 0x010000; // mass storage, SCSI
    public int QueueCount => 3;
    public ushort MaxQueueSize(int queue) => QueueSize;
    public ulong DeviceFeatures => FeatureChange;
    public int ConfigSize => ConfigBytes;
    /// <summary>Called with the new medium path (null: none) after each change, so the configuration follows it across reboots.</summary>
    public Action<string?>? MediumChanged { get; set; }

    public ulong Requests { get; private set; }
    public ulong BytesRead { get; private set; }

    /// <summary>The drive (for tests and state); callers outside the queue thread take <see cref="SyncRoot"/>.</summary>
    public ScsiCdrom Lun => _lun;
    public object SyncRoot => _lock;

    public void ReadConfig(int offset, Span<byte> data)
    {
        Span<byte> c = stackalloc byte[ConfigBytes];
        BinaryPrimitives.WriteUInt32LittleEndian(c, 1);                  // num_queues (request queues)
        BinaryPrimitives.WriteUInt32LittleEndian(c[4..], QueueSize - 2u); // seg_max
        BinaryPrimitives.WriteUInt32LittleEndian(c[8..], MaxSectors);    // max_sectors
        BinaryPrimitives.WriteUInt32LittleEndian(c[12..], QueueSize);    // cmd_per_lun
        BinaryPrimitives.WriteUInt32LittleEndian(c[16..], EventBytes);   // event_info_size
        lock (_lock)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(c[20..], _senseSize);
            BinaryPrimitives.WriteUInt32LittleEndian(c[24..], _cdbSize);
        }
        // max_channel 0, max_target 0, max_lun 0: the driver scans one LUN.
        data.Clear();
        if (offset < 0 || offset >= ConfigBytes) return;
        c.Slice(offset, Math.Min(data.Length, ConfigBytes - offset)).CopyTo(data);
    }

    /// <summary>sense_size (offset 20) and cdb_size (24) are driver-writable; values are clamped to 256.</summary>
    public void WriteConfig(int offset, ReadOnlySpan<byte> data)
    {
        if (data.Length != 4) return;
        uint v = Math.Min(BinaryPrimitives.ReadUInt32LittleEndian(data), MaxCdbOrSenseSize);
        lock (_lock)
        {
            if (offset == 20) _senseSize = v;
            else if (offset == 24) _cdbSize = Math.Max(v, 6);
        }
    }

    public void Activate(IVirtioContext context)
    {
        _kick.Activate(context);
        lock (_lock) _changeEvents = (context.NegotiatedFeatures & FeatureChange) != 0;
    }

    public void Reset()
    {
        _kick.Reset();
        lock (_lock)
        {
            _events.Clear();
            _eventsMissed = false;
            _changeEvents = false;
            (_cdbSize, _senseSize) = (DefaultCdbSize, DefaultSenseSize);
        }
    }

    public void ProcessQueue(IVirtioContext context, int queue)
    {
        if (context.Queue(queue) is not { } q) return;
        bool used;
        lock (_lock)
        {
            used = queue switch
            {
                RequestQueue => q.DrainAvailable(_chain, (Device: this, Context: context), static (s, c) => s.Device.HandleRequest(s.Context, c)),
                ControlQueue => q.DrainAvailable(_chain, (Device: this, Context: context), static (s, c) => s.Device.HandleControl(s.Context, c)),
                EventQueue => DeliverEvents(context, q),
                _ => false,
            };
        }
        if (used) context.NotifyUsed(queue);
    }

    // ---- request queue ----
    private uint? HandleRequest(IVirtioContext context, DescriptorChain chain)
    {
        var memory = context.Memory;
        int headerBytes = 19 + (int)_cdbSize, responseBytes = 12 + (int)_senseSize;
        if (chain.ReadableBytes < (ulong)headerBytes || chain.WritableBytes < (ulong)responseBytes)
        {
            context.Fail($"request {chain.Head}: {chain.ReadableBytes} readable and {chain.WritableBytes} writable bytes, less than the {headerBytes}-byte request and {responseBytes}-byte response");
            return null;
        }
        Span<byte> header = stackalloc byte[19 + (int)MaxCdbOrSenseSize];
        header = header[..headerBytes];
        if (chain.ReadFrom(memory, 0, header) != headerBytes)
        {
            context.Fail($"request {chain.Head}: header not in guest RAM");
            return null;
        }
        Requests++;
        Span<byte> response = stackalloc byte[12 + (int)MaxCdbOrSenseSize];
        response = response[..responseBytes];
        response.Clear();
        ulong dataIn = chain.WritableBytes - (ulong)responseBytes;
        uint written = 0;
        if (!IsOurLun(header[..8]))
            response[11] = ResponseBadTarget;
        else
        {
            var cdb = header.Slice(19, Math.Min((int)_cdbSize, 32));
            byte status = _lun.Execute(cdb, _data, out int length, out var read);
            if (status == Scsi.StatusGood && read.Bytes > 0)
            {
                long bytes = (long)Math.Min((ulong)read.Bytes, dataIn);
                if (CopyMedium(context, chain, (ulong)responseBytes, read.Offset, bytes)) written = (uint)bytes;
                else status = Scsi.StatusCheckCondition;
                BytesRead += written;
            }
            else if (status == Scsi.StatusGood && length > 0)
            {
                int n = (int)Math.Min((ulong)length, dataIn);
                written = (uint)chain.WriteTo(memory, (ulong)responseBytes, _data.AsSpan(0, n));
            }
            response[10] = status;
            if (status == Scsi.StatusCheckCondition)
            {
                int senseLen = Math.Min(Scsi.FixedSenseBytes, (int)_senseSize);
                _lun.Sense[..senseLen].CopyTo(response[12..]);
                BinaryPrimitives.WriteUInt32LittleEndian(response, (uint)senseLen);
                written = 0;
            }
            BinaryPrimitives.WriteUInt32LittleEndian(response[4..], (uint)Math.Min(dataIn - written, uint.MaxValue)); // resid
        }
        chain.WriteTo(memory, 0, response);
        return (uint)responseBytes + written;
    }

    /// <summary>lun[0] = 1, lun[1] = target, lun[2..3] = 0x4000 | LUN (flat addressing; LUN 0 may also come as 0x0000).</summary>
    private static bool IsOurLun(ReadOnlySpan<byte> lun) =>
        lun[0] == 1 && lun[1] == 0 && (((lun[2] << 8) | lun[3]) & 0x3FFF) == 0 && (lun[2] & 0xC0) is 0x00 or 0x40;

    /// <summary>Reads the image straight into the data-in buffers (after the response header); false on a host I/O error (sense set).</summary>
    private bool CopyMedium(IVirtioContext context, DescriptorChain chain, ulong skip, long offset, long bytes)
    {
        long done = 0;
        foreach (var b in chain.Buffers)
        {
            if (!b.DeviceWritable || b.Length == 0) continue;
            if (done >= bytes) break;
            if (skip >= b.Length) { skip -= b.Length; continue; }
            int n = (int)Math.Min(b.Length - skip, (ulong)(bytes - done));
            if (!context.Memory.TryGetWritableSpan(b.Address + skip, n, out var span) || !_lun.ReadMedium(offset + done, span))
            {
                _log($"{_lun.Image?.Path}: read at byte {offset + done} failed");
                return false;
            }
            done += n;
            skip = 0;
        }
        return true;
    }

    // ---- control queue ----
    private uint? HandleControl(IVirtioContext context, DescriptorChain chain)
    {
        var memory = context.Memory;
        Span<byte> request = stackalloc byte[24];
        int n = chain.ReadFrom(memory, 0, request);
        if (n < 4) { context.Fail($"control request {chain.Head}: no type"); return null; }
        uint type = BinaryPrimitives.ReadUInt32LittleEndian(request);
        switch (type)
        {
            case ControlTmf when n >= 24 && chain.WritableBytes >= 1:
                // Every request completes before the next is read: nothing is ever in flight to abort or reset.
                byte r = IsOurLun(request.Slice(8, 8)) ? ResponseFunctionComplete : ResponseBadTarget;
                chain.WriteTo(memory, 0, [r]);
                return 1;
            case ControlAnQuery or ControlAnSubscribe when n >= 16 && chain.WritableBytes >= 5:
                // No asynchronous notifications: event_actual 0 (media changes come as PARAM_CHANGE events and GESN).
                Span<byte> an = stackalloc byte[5];
                an.Clear();
                an[4] = IsOurLun(request.Slice(4, 8)) ? ResponseOk : ResponseBadTarget;
                chain.WriteTo(memory, 0, an);
                return 5;
            default:
                context.Fail($"control request {chain.Head}: type {type} with {n} readable and {chain.WritableBytes} writable bytes");
                return null;
        }
    }

    // ---- event queue ----
    private bool DeliverEvents(IVirtioContext context, VirtQueue q)
    {
        bool used = false;
        Span<byte> e = stackalloc byte[EventBytes];
        while (_events.Count > 0 || _eventsMissed)
        {
            if (q.Pop(_chain) != PopResult.Chain) break;
            if (_chain.WritableBytes < EventBytes) { context.Fail($"event buffer {_chain.Head}: {_chain.WritableBytes} bytes, less than {EventBytes}"); return used; }
            e.Clear();
            uint type = EventParamChange, reason = 0;
            if (_events.Count > 0) reason = _events.Dequeue();
            else type = 0; // VIRTIO_SCSI_T_NO_EVENT carrying only the missed flag
            if (_eventsMissed) { type |= EventsMissed; _eventsMissed = false; }
            BinaryPrimitives.WriteUInt32LittleEndian(e, type);
            e[4] = 1; e[5] = 0; e[6] = 0x40; e[7] = 0; // target 0, LUN 0
            BinaryPrimitives.WriteUInt32LittleEndian(e[12..], reason);
            _chain.WriteTo(context.Memory, 0, e);
            q.PushUsed(_chain.Head, EventBytes);
            used = true;
        }
        return used;
    }

    /// <summary>Queues a PARAM_CHANGE event with the unit attention's ASC/ASCQ (when the driver accepted VIRTIO_SCSI_F_CHANGE).</summary>
    private void QueueParamChange(ushort asc)
    {
        if (!_changeEvents) return;
        if (_events.Count >= MaxQueuedEvents) { _eventsMissed = true; return; }
        _events.Enqueue((uint)(asc >> 8) | (uint)(asc & 0xFF) << 8);
    }

    // ---- media.change ----
    public IReadOnlyList<string> ControlRequests { get; } = [MediaChangeRequest.Name];

    /// <summary>
    /// media.change for this drive (the host routes it by PCI address); <paramref name="pci"/> is for the reply. One
    /// passed file (the ISO management opened, docs/vmm.md "Passing open files") is used instead of opening the path;
    /// the drive takes it, and the caller closes whatever is refused.
    /// </summary>
    public MediaStateReply ChangeMedia(MediaChangeRequest request, string pci, PassedFiles? files = null)
    {
        int passed = files?.Count ?? 0;
        if (passed > 0 && request.Path is null)
            throw new ArgumentException($"{MediaChangeRequest.Name}: ejecting (no \"path\") takes no passed file, but {passed} came with the request (they were closed).");
        if (passed > 1)
            throw new ArgumentException($"{MediaChangeRequest.Name}: \"path\" '{request.Path}' takes one passed file (the ISO), but {passed} came with the request (they were closed).");
        IsoImage? image = null;
        if (request.Path is not null)
        {
            try { image = passed == 1 ? IsoImage.OpenPassed(request.Path, files!.TakeAll()[0]) : IsoImage.Open(request.Path); }
            catch (IsoImageException e) { throw new ArgumentException($"{MediaChangeRequest.Name}: \"path\": {e.Message}"); }
        }
        IsoImage? old = null;
        bool refused = false;
        lock (_lock)
        {
            // The guest's lock stays after a forced change: it governs the guest's own eject, as on real drives.
            if (_lun.Locked && request.Force != true)
            {
                _lun.RequestEject(); // tell the guest (GET EVENT STATUS NOTIFICATION) someone wants the disc out
                refused = true;
            }
            else
            {
                old = _lun.ChangeMedium(image);
                QueueParamChange(image is null ? Scsi.AscMediumNotPresent : Scsi.AscMediumChanged);
            }
        }
        if (refused)
        {
            image?.Dispose();
            throw new InvalidOperationException($"{MediaChangeRequest.Name}: the guest has locked the tray of the drive at {pci} (PREVENT ALLOW MEDIUM REMOVAL) and was asked to eject; \"force\": true changes the medium anyway.");
        }
        old?.Dispose();
        MediumChanged?.Invoke(image?.Path);
        _log(image is null ? "medium ejected" : $"medium inserted: {image.Path} ({image.SizeBytes} bytes)");
        Kick();
        return StateReply(pci);
    }

    private void Kick() => _kick.Kick(EventQueue);

    /// <summary>
    /// A duplicate of the medium's open file when it is <paramref name="path"/>, for the next boot's drive (a jailed VMM
    /// could not open again an ISO management passed); null when the drive is empty or holds another medium.
    /// </summary>
    public Microsoft.Win32.SafeHandles.SafeFileHandle? DuplicateMedium(string? path)
    {
        lock (_lock) return _lun.Image is { } image && image.Path == path ? image.Duplicate() : null;
    }

    public MediaStateReply StateReply(string pci)
    {
        lock (_lock)
            return new MediaStateReply
            {
                Pci = pci,
                Path = _lun.MediumPresent ? _lun.Image!.Path : null,
                SizeBytes = _lun.MediumPresent ? _lun.Image!.SizeBytes : 0,
                Locked = _lun.Locked,
            };
    }

    /// <summary>Only through <see cref="ChangeMedia"/>: the request names a drive by PCI address, which the host resolves.</summary>
    public JsonElement HandleControlRequest(ControlRequest request) =>
        throw new ArgumentException($"{request.Request} is routed to a drive by its \"pci\" address.");

    // ---- state ----
    public string StateName => Name;
    public ushort StateVersion => VirtioScsiState.Version;

    public VirtioScsiState CaptureState()
    {
        lock (_lock)
            return new VirtioScsiState(_lun.Image?.Path, _lun.Image is null ? 0 : _lun.Image.SizeBytes, _lun.TrayOpen, _lun.Locked,
                _lun.PendingUnitAttention, _lun.PendingMediaEvent, _cdbSize, _senseSize, _changeEvents, [.. _events], _eventsMissed, Requests, BytesRead);
    }

    public void SaveState(StateWriter writer) => CaptureState().Write(writer);

    /// <summary>The snapshot's medium is opened again (and checked to be the same size); a missing one fails the restore naming it.</summary>
    public void RestoreState(StateReader reader, ushort version)
    {
        var s = VirtioScsiState.Read(reader, version);
        IsoImage? image = null, old = null;
        lock (_lock)
        {
            if (s.MediumPath is not null && s.MediumPath != _lun.Image?.Path)
            {
                try { image = IsoImage.Open(s.MediumPath); }
                catch (IsoImageException e) { throw reader.Fail($"the drive's medium: {e.Message}"); }
            }
            else if (s.MediumPath is not null) image = _lun.Image;
            if (image is not null && image.SizeBytes != s.MediumSizeBytes)
            {
                if (!ReferenceEquals(image, _lun.Image)) image.Dispose();
                throw reader.Fail($"{s.MediumPath}: the snapshot's medium had {s.MediumSizeBytes} bytes, this file {image.SizeBytes}");
            }
            if (!ReferenceEquals(image, _lun.Image)) old = _lun.Image;
            _lun.Restore(image, s.TrayOpen, s.Locked, s.UnitAttention, s.MediaEvent);
            (_cdbSize, _senseSize, _changeEvents, _eventsMissed) = (s.CdbSize, s.SenseSize, s.ChangeEvents, s.EventsMissed);
            _events.Clear();
            foreach (var e in s.Events) _events.Enqueue(e);
            (Requests, BytesRead) = (s.Requests, s.BytesRead);
        }
        old?.Dispose();
        MediumChanged?.Invoke(image?.Path);
    }

    public void Dispose()
    {
        _kick.Detach();
        lock (_lock) _lun.Dispose();
    }
}
