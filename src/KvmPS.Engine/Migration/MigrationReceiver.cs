using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using KvmPS.State;
using KvmPS.Vm;

namespace KvmPS.Migration;

/// <summary>
/// The destination side (<c>kvmps-vmm --incoming URI</c>, docs/migration.md): waits for one connection, checks the
/// header and the source machine's identity against its own configuration, builds the hardware as a restore does,
/// writes the pages it receives into guest RAM, restores every state record, and hands back a machine ready to
/// start. After the VM runs, <see cref="ConfirmRunning"/> tells the source. Every failure is a
/// <see cref="MigrationException"/>; the source is told why (an Error frame) when the connection still works, and
/// everything built is released.
/// </summary>
public sealed class MigrationReceiver : IDisposable
{
    private readonly MigrationEndpoint _endpoint;
    private readonly string? _token;
    private MigrationStream? _stream;

    /// <param name="token">When set, a connection must present it first (<see cref="MigrationToken"/>); others are refused and the wait goes on.</param>
    public MigrationReceiver(MigrationEndpoint endpoint, string? token = null)
    {
        _endpoint = endpoint;
        _token = token;
    }

    /// <summary>The source's VM was paused (by its user): the received one stays paused here too.</summary>
    public bool SourcePaused { get; private set; }

    /// <summary>Bytes of guest RAM received, and how long receiving took (for the log line).</summary>
    public long PageBytes { get; private set; }
    public TimeSpan Elapsed { get; private set; }
    /// <summary>With the disks in the stream (format version 2): disk bytes written, and how many disks; null otherwise.</summary>
    public (long Bytes, int Disks)? DiskCopy => _storage is { } s ? (s.BytesWritten, s.Count) : null;
    private StorageCopyReceiver? _storage;
    private Devices.Config.HandedOverResources _deferred; // what the source hands over at the pause (DeviceHandover)
    private VirtualMachine? _machine;

    /// <summary>The devices that came as the source's open files (or, disks over tcp, released by it): how many of each.</summary>
    public HandedOverDevices HandedOver => _handedOver;
    private HandedOverDevices _handedOver;

    /// <summary>The VM ran here but the source keeps it: the disk images created here go.</summary>
    public void RemoveReceivedImages() => _storage?.RemoveImages();

    /// <summary>The user a Unix listening socket is given to (a jailed VMM's, <see cref="MigrationEndpoint.Listen"/>); null: it stays the creator's.</summary>
    public (uint Uid, uint Gid)? SocketOwner { get; init; }

    /// <summary>Receives the VM. Returns null when <paramref name="stop"/> said to give up before a source connected.</summary>
    public VirtualMachine? Receive(MachineBuilder builder, Func<bool> stop, TextWriter log)
    {
        using (var listener = _endpoint.Listen(SocketOwner))
        {
            log.WriteLine($"kvmps-vmm: waiting for a migration stream on {_endpoint.Uri}");
            while (true)
            {
                var socket = listener.Accept(stop);
                if (socket is null) return null;
                if (_token is null || MigrationToken.Verify(socket, _token) is not { } refused)
                {
                    _stream = MigrationStream.Over(socket, MigrationSender.IoTimeoutMs);
                    break;
                }
                // Someone else reached the port first (or a stale sender): drop it, keep waiting for the source.
                string peer = socket.RemoteEndPoint?.ToString() ?? "a peer";
                socket.Dispose();
                log.WriteLine($"kvmps-vmm: refused a migration connection from {peer}: {refused}; still waiting on {_endpoint.Uri}");
            }
        } // the listening socket (and its file) goes at once: only one source is served
        var clock = Stopwatch.StartNew();
        VirtualMachine? machine = null;
        try
        {
            uint version = _stream.ReadHeader();
            var config = _stream.Expect(MigrationCommand.Config, "source");
            CheckIdentity(config.Data, builder.Config);
            if (version == MigrationStream.StorageFormatVersion)
            {
                // The disks come in the stream: fresh images at this configuration's paths, before the devices open them.
                _storage = new StorageCopyReceiver();
                _storage.CreateImages(_stream.Expect(MigrationCommand.Disks, "source").Data, builder.Config);
            }
            // Versions 3 and 4: the source holds the images (and their locks), taps and vsock listeners until the pause;
            // then it hands their open descriptors over (Unix socket) or closes its images (tcp, shared storage). The
            // devices are built without them.
            _deferred = DeviceHandover.For(version);
            machine = _deferred == Devices.Config.HandedOverResources.None ? builder.BuildHardware() : builder.BuildHardwareDeferring(_deferred);
            _storage?.Attach(machine);
            _stream.WriteFrame(MigrationCommand.Ready, []);
            ReceiveMemoryAndState(machine);
            Elapsed = clock.Elapsed;
            _machine = machine;
            return machine;
        }
        catch (Exception e)
        {
            machine?.Dispose();
            _storage?.RemoveImages(); // after the machine closed them
            string reason = e is MigrationException ? e.Message : e is StateFormatException or SnapshotException ? $"the state does not fit this machine: {e.Message}" : $"{e.GetType().Name}: {e.Message}";
            try { _stream.WriteText(MigrationCommand.Error, reason); } catch (MigrationException) { }
            _stream.Dispose();
            if (e is MigrationException) throw;
            throw new MigrationException(reason, e);
        }
    }

    private static void CheckIdentity(ReadOnlySpan<byte> payload, MachineConfig config)
    {
        if (payload.Length < 4) throw new MigrationException("the stream is corrupt: the Config frame is too short");
        uint length = BinaryPrimitives.ReadUInt32LittleEndian(payload);
        if (length > payload.Length - 4) throw new MigrationException("the stream is corrupt: the Config frame's identity runs past its end");
        string[] source;
        try { source = new UTF8Encoding(false, true).GetString(payload.Slice(4, (int)length)).Split('\n'); }
        catch (DecoderFallbackException) { throw new MigrationException("the stream is corrupt: the machine identity is not UTF-8"); }
        if (MachineIdentity.Compare(source, MachineIdentity.For(config)) is { } difference)
            throw new MigrationException($"the source VM's configuration does not match this VMM's: {difference}");
    }

    private void ReceiveMemoryAndState(VirtualMachine machine)
    {
        var memory = machine.Memory;
        IReadOnlyList<StateRecord>? records = null;
        var fds = new List<Interop.MemfdHandle>();
        while (true)
        {
            MigrationFrame frame;
            try
            {
                frame = _stream!.ReadFrame(fds);
                if (fds.Count > 0 && frame.Command is not (MigrationCommand.MemoryFds or MigrationCommand.DeviceFds))
                    throw new MigrationException($"the stream is corrupt: file descriptors came with a {frame.Command} frame");
            }
            catch
            {
                foreach (var fd in fds) fd.Dispose();
                throw;
            }
            var data = frame.Data;
            switch (frame.Command)
            {
                case MigrationCommand.MemoryFds:
                    AdoptMemory(memory, data, fds);
                    fds = [];
                    break;
                case MigrationCommand.Pages:
                {
                    if (data.Length < 12) throw new MigrationException("the stream is corrupt: a Pages frame is too short");
                    ulong first = BinaryPrimitives.ReadUInt64LittleEndian(data);
                    uint count = BinaryPrimitives.ReadUInt32LittleEndian(data[8..]);
                    if (count == 0 || count > MigrationStream.MaxPagesPerFrame || data.Length != 12 + (long)count * MigrationStream.PageSize)
                        throw new MigrationException($"the stream is corrupt: a Pages frame of {data.Length} bytes for {count} pages");
                    if (GuestPages.RegionOf(memory, first, count, out ulong gpa) is null)
                        throw new MigrationException($"the stream is corrupt: pages {first}+{count} are outside this machine's {memory.PageCount} pages of RAM");
                    data[12..].CopyTo(memory.GetWritableSpan(gpa, (int)count * MigrationStream.PageSize));
                    PageBytes += count * MigrationStream.PageSize;
                    break;
                }
                case MigrationCommand.ZeroPages:
                {
                    if (data.Length % 12 != 0) throw new MigrationException("the stream is corrupt: a ZeroPages frame is not whole runs");
                    for (int at = 0; at < data.Length; at += 12)
                    {
                        ulong first = BinaryPrimitives.ReadUInt64LittleEndian(data[at..]);
                        uint count = BinaryPrimitives.ReadUInt32LittleEndian(data[(at + 8)..]);
                        // A zero run may cross region ends: zero it chunk by chunk, each chunk checked.
                        if (count == 0 || first + count > memory.PageCount || first + count < first)
                            throw new MigrationException($"the stream is corrupt: zero pages {first}+{count} are outside this machine's {memory.PageCount} pages of RAM");
                        foreach (var (_, n, gpa) in GuestPages.Chunks(memory, first, count)) memory.Fill(gpa, n * MigrationStream.PageSize, 0);
                    }
                    break;
                }
                case MigrationCommand.DeviceFds when _deferred != Devices.Config.HandedOverResources.None:
                    DeviceHandover.Adopt(machine, _deferred, data, fds, ref _handedOver);
                    break;
                case MigrationCommand.DiskData when _storage is not null:
                    _storage.Write(data);
                    break;
                case MigrationCommand.DiskZero when _storage is not null:
                    _storage.Zero(data);
                    break;
                case MigrationCommand.State:
                    if (records is not null) throw new MigrationException("the stream is corrupt: a second State frame");
                    try { records = SnapshotStateFile.Decode(data, "the migration stream's State frame"); }
                    catch (SnapshotException e) { throw new MigrationException(e.Message, e); }
                    break;
                case MigrationCommand.End:
                    if (records is null) throw new MigrationException("the stream ended without the machine state (no State frame before End)");
                    SourcePaused = data.Length >= 1 && data[0] == 1;
                    if (_deferred != Devices.Config.HandedOverResources.None) DeviceHandover.CheckAllAdopted(machine);
                    _storage?.Flush();
                    try { machine.RestoreState(records); }
                    catch (StateFormatException e) { throw new MigrationException($"the source's state does not fit this machine: {e.Message}", e); }
                    return;
                case MigrationCommand.Error:
                    throw new MigrationException($"the source gave up: {frame.Text}");
                default:
                    throw new MigrationException($"the stream is out of order: a {frame.Command} frame while receiving memory");
            }
        }
    }

    /// <summary>Local live upgrade: maps the source's memfds over guest RAM (the handles are the memory's from here on).</summary>
    private void AdoptMemory(GuestMemory memory, ReadOnlySpan<byte> data, List<Interop.MemfdHandle> fds)
    {
        try
        {
            if (data.Length < 4) throw new MigrationException("the stream is corrupt: a MemoryFds frame is too short");
            uint count = BinaryPrimitives.ReadUInt32LittleEndian(data);
            if (count != memory.Regions.Count || data.Length != 4 + count * 16)
                throw new MigrationException($"the source's memory has {count} regions, this machine {memory.Regions.Count}");
            if (fds.Count != count) throw new MigrationException($"the MemoryFds frame names {count} regions but {fds.Count} file descriptors came with it");
            for (int i = 0; i < count; i++)
            {
                ulong gpa = BinaryPrimitives.ReadUInt64LittleEndian(data[(4 + i * 16)..]), size = BinaryPrimitives.ReadUInt64LittleEndian(data[(12 + i * 16)..]);
                if (gpa != memory.Regions[i].GuestAddress || size != memory.Regions[i].SizeBytes)
                    throw new MigrationException($"the source's RAM region {i} is 0x{gpa:x}+0x{size:x}, this machine's 0x{memory.Regions[i].GuestAddress:x}+0x{memory.Regions[i].SizeBytes:x}");
            }
            memory.AdoptSharedMemory(fds);
            MemoryShared = true;
        }
        catch (GuestMemoryException e)
        {
            foreach (var fd in fds) fd.Dispose();
            throw new MigrationException($"the source's memory files cannot be used: {e.Message}", e);
        }
        catch
        {
            foreach (var fd in fds) fd.Dispose();
            throw;
        }
    }

    /// <summary>Guest RAM came as the source's memfds (local live upgrade), not as pages.</summary>
    public bool MemoryShared { get; private set; }

    /// <summary>The VM runs: tell the source, which then lets go of it. False when the source cannot be told.</summary>
    public bool ConfirmRunning(out string? error)
    {
        error = null;
        try
        {
            _stream!.WriteFrame(MigrationCommand.Running, []);
            // The source knows: it lets go of the taps and listeners both processes hold, and this VMM cleans them up from now.
            if (_machine is { } machine) DeviceHandover.SetOwnership(machine, _deferred, owns: true);
            return true;
        }
        catch (MigrationException e)
        {
            error = e.Message;
            return false;
        }
    }

    public void Dispose() => _stream?.Dispose();
}
