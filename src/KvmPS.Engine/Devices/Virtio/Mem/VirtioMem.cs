using System.Buffers.Binary;
using System.Text.Json;
using KvmPS.Contract;
using KvmPS.Devices.Config;
using KvmPS.Interop;
using KvmPS.State;
using KvmPS.Vm;

namespace KvmPS.Devices.Virtio.Mem;

/// <summary>
/// virtio-mem (device ID 24), virtio 1.2 "Memory Device": the guest plugs and unplugs blocks of the hot-plug region
/// (<see cref="GuestMemory.HotplugRegion"/>, between boot memory and memory_maximum_bytes) toward the
/// <c>requested_size</c> the host sets with <c>memory.set</c>.
/// <list type="bullet">
/// <item>Configuration (56 bytes, read-only for the driver): le64 block_size, le16 node_id, 6 bytes padding, le64 addr,
/// le64 region_size, le64 usable_region_size, le64 plugged_size, le64 requested_size. The usable region is the whole
/// region.</item>
/// <item>One queue (guestq): a chain carries a 24-byte request (driver-readable) and a 10-byte response
/// (device-writable); <see cref="VirtioMemBlocks"/> checks and applies it.</item>
/// <item>Unplugged blocks are given back with MADV_DONTNEED (<see cref="GuestMemory.Discard"/>), so the VMM's RSS
/// falls. The whole region stays in one KVM memory slot: reading unplugged memory returns zeros, as the spec requires
/// when VIRTIO_MEM_F_UNPLUGGED_INACCESSIBLE is not negotiated, which is why that feature is not offered (nor
/// VIRTIO_MEM_F_ACPI_PXM: the machine has no SRAT, node_id is 0).</item>
/// </list>
/// Host-side changes (a new requested size) run through the transport's notification path, as the balloon's do, so
/// the configuration-change interrupt is sent under the transport's lock and deferred while the VM is paused. The
/// device has no thread or timer of its own, so it needs no IPausable: a paused transport holds its queue.
/// </summary>
public sealed class VirtioMem : IVirtioDevice, IDeviceControl, IPersistent
{
    public const ushort QueueSize = 128;
    public const int GuestQueue = 0;
    public const ulong VIRTIO_MEM_F_ACPI_PXM = 1UL << 0, VIRTIO_MEM_F_UNPLUGGED_INACCESSIBLE = 1UL << 1;
    public const int ConfigBytes = 56;
    public const ulong DefaultBlockSizeBytes = 2UL << 20;

    private readonly GuestMemory _memory;
    private readonly Action<string> _log;
    private readonly DescriptorChain _chain = new();
    private readonly object _lock = new();
    private readonly VirtioMemBlocks _blocks; // guarded by _lock
    private readonly HostConfigNotice _notice = new();
    private long _requests;

    public VirtioMem(GuestMemory memory, ulong blockSizeBytes = DefaultBlockSizeBytes, Action<string>? log = null)
    {
        var region = memory.HotplugRegion
            ?? throw new DeviceConfigException("virtio-mem needs a hot-plug memory region: set memory_maximum_bytes (--max-memory) above memory_bytes.");
        if (region.GuestAddress % blockSizeBytes != 0 || region.SizeBytes % blockSizeBytes != 0)
            throw new DeviceConfigException($"virtio-mem: the hot-plug region 0x{region.GuestAddress:x}+0x{region.SizeBytes:x} is not a whole number of {blockSizeBytes}-byte blocks (memory_maximum_bytes - memory_bytes must be a multiple of block_size_bytes).");
        _memory = memory;
        _log = DeviceLog.Limit(log, "virtio-mem");
        _blocks = new VirtioMemBlocks(region.GuestAddress, region.SizeBytes, blockSizeBytes, Discard);
    }

    public string Name => "virtio-mem";
    public ushort DeviceType => 24;
    public uint PciClassCode => 0x00FF00; // PCI_CLASS_OTHERS, as QEMU presents virtio-mem-pci
    public int QueueCount => 1;
    public ushort MaxQueueSize(int queue) => QueueSize;
    public ulong DeviceFeatures => 0;
    public int ConfigSize => ConfigBytes;

    public ulong BlockSizeBytes => _blocks.BlockSizeBytes;
    public ulong RegionAddress => _blocks.RegionAddress;
    public ulong RegionBytes => _blocks.RegionBytes;
    public ulong PluggedBytes { get { lock (_lock) return _blocks.PluggedBytes; } }
    public ulong RequestedBytes { get { lock (_lock) return _blocks.RequestedBytes; } }
    public long ErrorResponses { get { lock (_lock) return _blocks.ErrorResponses; } }
    public bool DriverOk => _notice.DriverOk;

    /// <summary>
    /// Sets requested_size to <paramref name="totalBytes"/> − boot memory and tells the driver. Refused (nothing
    /// changes) below the boot memory, above the maximum, or off the block size.
    /// </summary>
    public void SetTotalMemory(long totalBytes)
    {
        ulong startup = _memory.BootRamBytes, maximum = startup + RegionBytes;
        if (totalBytes < 0 || (ulong)totalBytes < startup)
            throw new ArgumentException($"memory.set: {totalBytes} bytes is below the boot memory of {startup} bytes (memory_bytes); use balloon.set to give memory back below it.");
        if ((ulong)totalBytes > maximum)
            throw new ArgumentException($"memory.set: {totalBytes} bytes is above the maximum of {maximum} bytes (memory_maximum_bytes; raising it needs a restart).");
        if (((ulong)totalBytes - startup) % BlockSizeBytes != 0)
            throw new ArgumentException($"memory.set: {totalBytes} bytes is not the boot memory ({startup} bytes) plus a multiple of the {BlockSizeBytes}-byte block size.");
        lock (_lock) _blocks.RequestedBytes = (ulong)totalBytes - startup;
        _notice.Raise(GuestQueue);
    }

    public void ReadConfig(int offset, Span<byte> data)
    {
        Span<byte> cfg = stackalloc byte[ConfigBytes];
        cfg.Clear();
        lock (_lock)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(cfg, _blocks.BlockSizeBytes);
            // node_id (8) and padding stay 0: VIRTIO_MEM_F_ACPI_PXM is not offered.
            BinaryPrimitives.WriteUInt64LittleEndian(cfg[16..], _blocks.RegionAddress);
            BinaryPrimitives.WriteUInt64LittleEndian(cfg[24..], _blocks.RegionBytes);
            BinaryPrimitives.WriteUInt64LittleEndian(cfg[32..], _blocks.RegionBytes); // usable_region_size
            BinaryPrimitives.WriteUInt64LittleEndian(cfg[40..], _blocks.PluggedBytes);
            BinaryPrimitives.WriteUInt64LittleEndian(cfg[48..], _blocks.RequestedBytes);
        }
        data.Clear();
        if ((uint)offset < ConfigBytes) cfg[offset..Math.Min(ConfigBytes, offset + data.Length)].CopyTo(data);
    }

    /// <summary>The whole configuration is read-only for the driver.</summary>
    public void WriteConfig(int offset, ReadOnlySpan<byte> data) { }

    public void Activate(IVirtioContext context) => _notice.Activate(context);

    /// <summary>A driver reset keeps the plugged blocks (the next driver finds plugged_size and unplugs what it does not know).</summary>
    public void Reset()
    {
        _notice.Reset();
    }

    public void ProcessQueue(IVirtioContext context, int queue)
    {
        _notice.SendIfPending(context);
        if (queue != GuestQueue || context.Queue(GuestQueue) is not { } q) return;
        if (q.DrainAvailable(_chain, this, static (device, chain) => device.HandleRequest(chain)))
            context.NotifyUsed(GuestQueue);
    }

    /// <summary>One request chain: the response goes into its writable part; a chain without room for one is returned with nothing written.</summary>
    private uint HandleRequest(DescriptorChain chain)
    {
        Span<byte> request = stackalloc byte[VirtioMemBlocks.RequestBytes];
        Span<byte> response = stackalloc byte[VirtioMemBlocks.ResponseBytes];
        int n = chain.ReadFrom(_memory, 0, request);
        if (chain.WritableBytes < VirtioMemBlocks.ResponseBytes)
        {
            _log($"virtio-mem: a request chain with {chain.WritableBytes} writable bytes (a response needs {VirtioMemBlocks.ResponseBytes}); returned unanswered");
            return 0;
        }
        string? error;
        lock (_lock)
        {
            long before = _blocks.ErrorResponses;
            _blocks.Handle(request[..n], response);
            error = _blocks.ErrorResponses != before ? _blocks.LastError : null;
            _requests++;
        }
        if (error is not null) _log($"virtio-mem: request refused: {error}");
        return (uint)chain.WriteTo(_memory, 0, response);
    }

    private void Discard(ulong gpa, ulong length)
    {
        try { _memory.Discard(gpa, length); }
        catch (Exception e) when (e is GuestMemoryException or NativeCallException)
        {
            // The blocks are unplugged either way; only the host memory stays allocated.
            _log($"virtio-mem: cannot give back 0x{gpa:x}+0x{length:x}: {e.Message}");
        }
    }

    // ---- control requests ----
    public IReadOnlyList<string> ControlRequests { get; } = [MemorySetRequest.Name, MemoryGetRequest.Name];

    public JsonElement HandleControlRequest(ControlRequest request)
    {
        switch (request)
        {
            case MemorySetRequest set:
                SetTotalMemory(set.Bytes);
                return JsonSerializer.SerializeToElement(StateReply(), ContractJsonContext.Default.MemoryStateReply);
            case MemoryGetRequest:
                return JsonSerializer.SerializeToElement(StateReply(), ContractJsonContext.Default.MemoryStateReply);
            default:
                throw new ArgumentException($"virtio-mem does not handle '{request.Request}'.");
        }
    }

    /// <summary>The sizes as memory.set and memory.get reply them.</summary>
    public MemoryStateReply StateReply()
    {
        ulong startup = _memory.BootRamBytes;
        lock (_lock)
            return new MemoryStateReply
            {
                StartupBytes = (long)startup,
                MaximumBytes = (long)(startup + _blocks.RegionBytes),
                RequestedBytes = (long)(startup + _blocks.RequestedBytes),
                PluggedBytes = (long)_blocks.PluggedBytes,
                CurrentBytes = (long)(startup + _blocks.PluggedBytes),
                BlockSizeBytes = (long)_blocks.BlockSizeBytes,
                RegionStartBytes = (long)_blocks.RegionAddress,
                DriverOk = _notice.DriverOk,
                ErrorResponses = _blocks.ErrorResponses,
            };
    }

    // ---- state ----
    public string StateName => Name;
    public ushort StateVersion => VirtioMemState.Version;

    public VirtioMemState CaptureState()
    {
        lock (_lock)
            return new VirtioMemState(_blocks.BlockSizeBytes, _blocks.RegionAddress, _blocks.RegionBytes, _blocks.RequestedBytes,
                _notice.DriverOk, _notice.Pending, _blocks.CopyBitmap());
    }

    public void SaveState(StateWriter writer) => CaptureState().Write(writer);

    public void RestoreState(StateReader reader, ushort version)
    {
        var s = VirtioMemState.Read(reader, version);
        if (s.BlockSizeBytes != _blocks.BlockSizeBytes || s.RegionAddress != _blocks.RegionAddress || s.RegionBytes != _blocks.RegionBytes)
            throw reader.Fail($"the snapshot's region 0x{s.RegionAddress:x}+0x{s.RegionBytes:x} in {s.BlockSizeBytes}-byte blocks does not match the machine's 0x{_blocks.RegionAddress:x}+0x{_blocks.RegionBytes:x} in {_blocks.BlockSizeBytes}-byte blocks");
        if (s.RequestedBytes > _blocks.RegionBytes || s.RequestedBytes % _blocks.BlockSizeBytes != 0)
            throw reader.Fail($"requested size {s.RequestedBytes} is not a multiple of the block size within the {_blocks.RegionBytes}-byte region");
        lock (_lock)
        {
            try { _blocks.LoadBitmap(s.PluggedBitmap); }
            catch (ArgumentException e) { throw reader.Fail(e.Message); }
            _blocks.RequestedBytes = s.RequestedBytes;
        }
        _notice.Restore(s.DriverOk, s.ConfigDirty);
    }

    public void Dispose() => _notice.Detach();
}
