using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using KvmPS.Vm;

namespace KvmPS.Devices.Virtio;

/// <summary>One buffer of a descriptor chain, already checked to lie inside guest RAM.</summary>
public readonly record struct VirtqBuffer(ulong Address, uint Length, bool DeviceWritable);

/// <summary>
/// A popped descriptor chain: the head index (what goes back in the used ring) and its buffers in order, readable
/// ones first. Every buffer was checked against guest RAM when the chain was popped, so copying through
/// <see cref="ReadFrom"/>/<see cref="WriteTo"/> cannot reach host memory outside the guest's mappings.
/// </summary>
public sealed class DescriptorChain
{
    private readonly List<VirtqBuffer> _buffers = new();
    public ushort Head { get; internal set; }
    public IReadOnlyList<VirtqBuffer> Buffers => _buffers;
    public ulong ReadableBytes { get; private set; }
    public ulong WritableBytes { get; private set; }

    internal void Clear() { _buffers.Clear(); ReadableBytes = WritableBytes = 0; }
    internal void Add(VirtqBuffer b)
    {
        _buffers.Add(b);
        if (b.DeviceWritable) WritableBytes += b.Length; else ReadableBytes += b.Length;
    }

    /// <summary>Copies device-readable bytes from offset <paramref name="skip"/> into <paramref name="destination"/>; returns the count copied.</summary>
    public int ReadFrom(GuestMemory memory, ulong skip, Span<byte> destination)
    {
        int done = 0;
        foreach (var b in _buffers)
        {
            if (b.DeviceWritable || done == destination.Length) break;
            if (skip >= b.Length) { skip -= b.Length; continue; }
            int n = (int)Math.Min(b.Length - skip, (ulong)(destination.Length - done));
            if (!memory.TryGetReadOnlySpan(b.Address + skip, n, out var src)) break;
            src.CopyTo(destination[done..]);
            done += n;
            skip = 0;
        }
        return done;
    }

    /// <summary>Copies <paramref name="source"/> into the device-writable buffers from offset <paramref name="skip"/>; returns the count copied.</summary>
    public int WriteTo(GuestMemory memory, ulong skip, ReadOnlySpan<byte> source)
    {
        int done = 0;
        foreach (var b in _buffers)
        {
            if (!b.DeviceWritable) continue;
            if (done == source.Length) break;
            if (skip >= b.Length) { skip -= b.Length; continue; }
            int n = (int)Math.Min(b.Length - skip, (ulong)(source.Length - done));
            if (!memory.TryGetWritableSpan(b.Address + skip, n, out var dst)) break;
            source.Slice(done, n).CopyTo(dst);
            done += n;
            skip = 0;
        }
        return done;
    }

    /// <summary>Calls <paramref name="fill"/> on each device-writable buffer (as a span of guest memory) in order, up to <paramref name="maxBytes"/>; returns the bytes covered.</summary>
    public ulong FillWritable(GuestMemory memory, ulong maxBytes, SpanAction fill)
    {
        ulong done = 0;
        foreach (var b in _buffers)
        {
            if (!b.DeviceWritable || done >= maxBytes) continue;
            int n = (int)Math.Min(b.Length, maxBytes - done);
            if (n == 0 || !memory.TryGetWritableSpan(b.Address, n, out var dst)) continue;
            fill(dst);
            done += (ulong)n;
        }
        return done;
    }

    public delegate void SpanAction(Span<byte> span);
}

/// <summary>What <see cref="VirtQueue.Pop"/> found.</summary>
public enum PopResult { Empty, Chain, Error }

/// <summary>
/// A split virtqueue (virtio 1.x, 2.7) as seen by the device. All guest-supplied values — ring addresses, indices,
/// descriptor addresses, lengths, flags — are validated before use; every guest access goes through
/// <see cref="GuestMemory.TryGetReadOnlySpan"/> and, for what the device writes (used ring, avail_event, flags), <see cref="GuestMemory.TryGetWritableSpan"/>, which records the page for diff snapshots. A malformed ring or chain makes the queue <see cref="IsBroken"/> with an
/// <see cref="Error"/>; the transport then sets NEEDS_RESET. Nothing here throws because of guest data.
/// Not thread-safe: one thread processes a queue at a time (the transport's lock).
/// </summary>
public sealed class VirtQueue
{
    public const ushort DescFlagNext = 1, DescFlagWrite = 2, DescFlagIndirect = 4;
    public const ushort AvailFlagNoInterrupt = 1, UsedFlagNoNotify = 1;
    public const ushort MaxSize = 32768;
    /// <summary>Default cap on the bytes one chain may describe.</summary>
    public const ulong DefaultMaxChainBytes = 64UL << 20;

    private readonly GuestMemory _memory;
    private ushort _lastAvail;   // next avail ring slot to consume
    private ushort _usedIdx;     // our copy of used->idx
    private ushort _signalledUsed; // used->idx at the last interrupt decision (EVENT_IDX)
    private bool _signalledValid;

    public ushort Size { get; }
    public ulong DescTable { get; }
    public ulong AvailRing { get; }
    public ulong UsedRing { get; }
    public bool EventIdx { get; }
    public bool IndirectAllowed { get; }
    public ulong MaxChainBytes { get; init; } = DefaultMaxChainBytes;
    public bool IsBroken => Error is not null;
    public string? Error { get; private set; }
    public ushort LastAvailIndex => _lastAvail;
    public ushort UsedIndex => _usedIdx;

    public static int DescTableBytes(ushort size) => 16 * size;
    public static int AvailRingBytes(ushort size, bool eventIdx) => 4 + 2 * size + (eventIdx ? 2 : 0);
    public static int UsedRingBytes(ushort size, bool eventIdx) => 4 + 8 * size + (eventIdx ? 2 : 0);

    private VirtQueue(GuestMemory memory, ushort size, ulong desc, ulong avail, ulong used, bool eventIdx, bool indirect)
    {
        _memory = memory;
        Size = size;
        DescTable = desc;
        AvailRing = avail;
        UsedRing = used;
        EventIdx = eventIdx;
        IndirectAllowed = indirect;
    }

    /// <summary>
    /// Validates the driver's queue layout (power-of-two size, alignment 16/2/4, every ring inside guest RAM) and
    /// creates the queue; on failure returns null with the reason. The device starts from avail/used index 0 as
    /// the spec requires after a reset.
    /// </summary>
    public static VirtQueue? TryCreate(GuestMemory memory, ushort size, ulong desc, ulong avail, ulong used, bool eventIdx, bool indirect, out string? error)
    {
        error = null;
        if (size == 0 || size > MaxSize || (size & (size - 1)) != 0) error = $"queue size {size} is not a power of two in 1..{MaxSize}";
        else if (desc % 16 != 0) error = $"descriptor table 0x{desc:x} is not 16-byte aligned";
        else if (avail % 2 != 0) error = $"available ring 0x{avail:x} is not 2-byte aligned";
        else if (used % 4 != 0) error = $"used ring 0x{used:x} is not 4-byte aligned";
        else if (!memory.IsValidRange(desc, (ulong)DescTableBytes(size))) error = $"descriptor table 0x{desc:x}+0x{DescTableBytes(size):x} is outside guest RAM";
        else if (!memory.IsValidRange(avail, (ulong)AvailRingBytes(size, eventIdx))) error = $"available ring 0x{avail:x} is outside guest RAM";
        else if (!memory.IsValidRange(used, (ulong)UsedRingBytes(size, eventIdx))) error = $"used ring 0x{used:x} is outside guest RAM";
        return error is null ? new VirtQueue(memory, size, desc, avail, used, eventIdx, indirect) : null;
    }

    private void Fail(string message) => Error ??= message;

    /// <summary>The queue's position and layout, for a snapshot (taken while the device is paused).</summary>
    public VirtQueueState CaptureState() =>
        new(Size, DescTable, AvailRing, UsedRing, EventIdx, IndirectAllowed, _lastAvail, _usedIdx, _signalledUsed, _signalledValid, Error);

    /// <summary>
    /// Re-creates a queue from <paramref name="state"/>: the layout is validated as when the driver enabled it, then
    /// the device continues at the saved indices (not at 0). Nothing is read from or written to the rings here.
    /// Returns null with the reason when the layout does not fit <paramref name="memory"/>.
    /// </summary>
    public static VirtQueue? TryRestore(GuestMemory memory, VirtQueueState state, out string? error)
    {
        var q = TryCreate(memory, state.Size, state.DescTable, state.AvailRing, state.UsedRing, state.EventIdx, state.IndirectAllowed, out error);
        if (q is null) return null;
        q._lastAvail = state.NextAvailIndex;
        q._usedIdx = state.NextUsedIndex;
        q._signalledUsed = state.SignalledUsedIndex;
        q._signalledValid = state.SignalledValid;
        q.Error = state.Error;
        return q;
    }

    // ---- ring field access: aligned 16-bit fields with acquire/release semantics ----
    private ushort Load16(ulong gpa)
    {
        if (!_memory.TryGetReadOnlySpan(gpa, 2, out var s)) { Fail($"ring field at 0x{gpa:x} is outside guest RAM"); return 0; }
        return Volatile.Read(ref Unsafe.AsRef(in MemoryMarshal.Cast<byte, ushort>(s)[0]));
    }

    private void Store16(ulong gpa, ushort value)
    {
        if (!_memory.TryGetWritableSpan(gpa, 2, out var s)) { Fail($"ring field at 0x{gpa:x} is outside guest RAM"); return; }
        Volatile.Write(ref MemoryMarshal.Cast<byte, ushort>(s)[0], value);
    }

    private ushort AvailFlags => Load16(AvailRing);
    private ushort AvailIdx => Load16(AvailRing + 2);
    private ushort UsedEvent => Load16(AvailRing + 4 + 2UL * Size);

    /// <summary>How many chains the driver has made available that the device has not popped (0 when broken).</summary>
    public int Pending
    {
        get
        {
            if (IsBroken) return 0;
            int n = (ushort)(AvailIdx - _lastAvail);
            return n > Size ? 0 : n;
        }
    }

    /// <summary>
    /// Takes the next available chain into <paramref name="chain"/>. Checks: avail index sane (never more than Size
    /// ahead), head and next indices &lt; Size, at most Size descriptors per chain (loop detection), indirect tables
    /// only when negotiated, 16-byte multiples, not nested and not combined with NEXT, readable buffers before
    /// writable ones, every buffer inside guest RAM, total length ≤ <see cref="MaxChainBytes"/>.
    /// </summary>
    public PopResult Pop(DescriptorChain chain)
    {
        chain.Clear();
        if (IsBroken) return PopResult.Error;
        ushort availIdx = AvailIdx;
        if (IsBroken) return PopResult.Error;
        ushort pending = (ushort)(availIdx - _lastAvail);
        if (pending == 0) return PopResult.Empty;
        if (pending > Size) { Fail($"available index {availIdx} is {pending} entries ahead of the device ({_lastAvail}), more than the queue size {Size}"); return PopResult.Error; }
        // Acquire: the ring entry and descriptors are read after the index (Volatile.Read above orders them).
        ushort head = Load16(AvailRing + 4 + 2UL * (ushort)(_lastAvail % Size));
        if (IsBroken) return PopResult.Error;
        if (head >= Size) { Fail($"available ring entry {_lastAvail % Size} names descriptor {head}, beyond the queue size {Size}"); return PopResult.Error; }
        chain.Head = head;

        if (!WalkChain(chain, head)) { chain.Clear(); return PopResult.Error; }
        _lastAvail++;
        return PopResult.Chain;
    }

    private bool WalkChain(DescriptorChain chain, ushort head)
    {
        ulong table = DescTable;
        uint tableSize = Size;
        bool indirect = false;
        uint index = head;
        uint seen = 0;
        ulong total = 0;
        bool sawWritable = false;
        while (true)
        {
            if (index >= tableSize) { Fail($"descriptor chain from head {head} links to index {index}, beyond the table size {tableSize}"); return false; }
            if (++seen > tableSize) { Fail($"descriptor chain from head {head} is longer than {tableSize} entries (a loop?)"); return false; }
            if (!_memory.TryGetReadOnlySpan(table + 16UL * index, 16, out var d)) { Fail($"descriptor {index} at 0x{table + 16UL * index:x} is outside guest RAM"); return false; }
            ulong addr = BinaryPrimitives.ReadUInt64LittleEndian(d);
            uint len = BinaryPrimitives.ReadUInt32LittleEndian(d[8..]);
            ushort flags = BinaryPrimitives.ReadUInt16LittleEndian(d[12..]);
            ushort next = BinaryPrimitives.ReadUInt16LittleEndian(d[14..]);

            if ((flags & DescFlagIndirect) != 0)
            {
                if (!IndirectAllowed) { Fail($"descriptor {index} is indirect but VIRTIO_F_INDIRECT_DESC was not negotiated"); return false; }
                if (indirect) { Fail($"indirect descriptor {index} inside an indirect table"); return false; }
                if ((flags & DescFlagNext) != 0) { Fail($"descriptor {index} has both INDIRECT and NEXT set"); return false; }
                if (len == 0 || len % 16 != 0 || len / 16 > MaxSize) { Fail($"indirect table length {len} of descriptor {index} is not a multiple of 16 in 16..{16 * MaxSize}"); return false; }
                if (!_memory.IsValidRange(addr, len)) { Fail($"indirect table 0x{addr:x}+0x{len:x} is outside guest RAM"); return false; }
                indirect = true;
                table = addr;
                tableSize = len / 16;
                index = 0;
                seen = 0;
                continue;
            }

            bool writable = (flags & DescFlagWrite) != 0;
            if (!writable && sawWritable) { Fail($"descriptor {index} is device-readable after a device-writable one"); return false; }
            sawWritable |= writable;
            total += len;
            if (total > MaxChainBytes) { Fail($"descriptor chain from head {head} describes more than {MaxChainBytes} bytes"); return false; }
            if (len > 0 && !_memory.IsValidRange(addr, len)) { Fail($"buffer 0x{addr:x}+0x{len:x} of descriptor {index} is outside guest RAM"); return false; }
            chain.Add(new VirtqBuffer(addr, len, writable));

            if ((flags & DescFlagNext) == 0) return true;
            index = next;
        }
    }

    /// <summary>Puts the head of a used chain back with the number of bytes written into its buffers; publishes used->idx with release semantics.</summary>
    public void PushUsed(ushort head, uint writtenBytes)
    {
        if (IsBroken) return;
        ulong elem = UsedRing + 4 + 8UL * (ushort)(_usedIdx % Size);
        if (!_memory.TryGetWritableSpan(elem, 8, out var e)) { Fail($"used ring element at 0x{elem:x} is outside guest RAM"); return; }
        BinaryPrimitives.WriteUInt32LittleEndian(e, head);
        BinaryPrimitives.WriteUInt32LittleEndian(e[4..], writtenBytes);
        _usedIdx++;
        Store16(UsedRing + 2, _usedIdx); // release: the element is visible before the index
    }

    /// <summary>
    /// Whether the driver wants an interrupt for what was pushed since the last call. With VIRTIO_F_EVENT_IDX:
    /// interrupt when used_event lies in [old, new) (the vring_need_event test); without: unless the driver set
    /// VIRTQ_AVAIL_F_NO_INTERRUPT.
    /// </summary>
    public bool ShouldInterrupt()
    {
        if (IsBroken) return false;
        Interlocked.MemoryBarrier(); // the used index store must be visible before we read used_event / flags
        if (!EventIdx) return (AvailFlags & AvailFlagNoInterrupt) == 0;
        ushort newIdx = _usedIdx, old = _signalledUsed;
        bool valid = _signalledValid;
        _signalledUsed = newIdx;
        _signalledValid = true;
        if (!valid) return true; // first decision after (re)start: nothing to compare against
        return NeedEvent(UsedEvent, newIdx, old);
    }

    /// <summary>vring_need_event: true when <paramref name="eventIdx"/> is in the window (old, new] as seen by a 16-bit ring.</summary>
    public static bool NeedEvent(ushort eventIdx, ushort newIdx, ushort oldIdx) => (ushort)(newIdx - eventIdx - 1) < (ushort)(newIdx - oldIdx);

    /// <summary>
    /// The device's answer to a notification, for devices that complete each chain at once: pops every available
    /// chain into <paramref name="chain"/> and hands it to <paramref name="handle"/>, which returns the used length,
    /// or null when the chain was bad and the device has failed (then processing stops). Notifications are
    /// suppressed while draining and re-enabled at the end, re-checking for chains that arrived meanwhile (the
    /// EVENT_IDX race). Returns whether any chain was used, i.e. whether to interrupt the driver.
    /// <paramref name="state"/> saves the caller a closure allocation on this hot path.
    /// </summary>
    public bool DrainAvailable<TState>(DescriptorChain chain, TState state, Func<TState, DescriptorChain, uint?> handle)
    {
        bool used = false;
        do
        {
            DisableNotifications();
            while (Pop(chain) == PopResult.Chain)
            {
                if (handle(state, chain) is not uint written) return used;
                PushUsed(chain.Head, written);
                used = true;
            }
        } while (!IsBroken && EnableNotifications());
        return used;
    }

    /// <summary>Asks the driver not to notify while the device is busy (used->flags NO_NOTIFY; a no-op with EVENT_IDX).</summary>
    public void DisableNotifications()
    {
        if (IsBroken || EventIdx) return;
        Store16(UsedRing, UsedFlagNoNotify);
    }

    /// <summary>
    /// Re-enables driver notifications and reports whether more work arrived meanwhile (then the caller keeps going).
    /// With EVENT_IDX this publishes avail_event = the next index the device will look at.
    /// </summary>
    public bool EnableNotifications()
    {
        if (IsBroken) return false;
        if (EventIdx) Store16(UsedRing + 4 + 8UL * Size, _lastAvail);
        else Store16(UsedRing, 0);
        Interlocked.MemoryBarrier(); // store (flags/avail_event) before re-reading avail->idx
        return Pending > 0;
    }
}
