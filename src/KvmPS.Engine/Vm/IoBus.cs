using KvmPS.Devices;

namespace KvmPS.Vm;

/// <summary>A device mapping overlaps one already on the bus.</summary>
public sealed class BusConflictException : InvalidOperationException
{
    public BusConflictException(string message) : base(message) { }
}

/// <summary>
/// The 64 KiB x86 port space. A direct table indexed by port: one array load per exit, no search.
/// </summary>
public sealed class PortIoBus
{
    private readonly struct Slot(IBusDevice device, ushort basePort)
    {
        public readonly IBusDevice Device = device;
        public readonly ushort Base = basePort;
    }

    private readonly Slot[] _ports = new Slot[0x10000];

    public void Register(IBusDevice device, ushort basePort, int length)
    {
        if (length <= 0 || basePort + length > 0x10000) throw new ArgumentOutOfRangeException(nameof(length));
        for (int p = basePort; p < basePort + length; p++)
            if (_ports[p].Device is { } other) throw new BusConflictException($"Port 0x{p:x} of {device.Name} is already used by {other.Name}.");
        for (int p = basePort; p < basePort + length; p++) _ports[p] = new Slot(device, basePort);
    }

    /// <summary>Dispatches an access; unclaimed ports read as all-ones and swallow writes, as on a PC.</summary>
    public bool Read(ushort port, Span<byte> data)
    {
        var slot = _ports[port];
        if (slot.Device is null) { data.Fill(0xff); return false; }
        slot.Device.Read((ulong)(port - slot.Base), data);
        return true;
    }

    public bool Write(ushort port, ReadOnlySpan<byte> data)
    {
        var slot = _ports[port];
        if (slot.Device is null) return false;
        slot.Device.Write((ulong)(port - slot.Base), data);
        return true;
    }
}

/// <summary>Guest-physical MMIO ranges; sorted, found by binary search. Registration is rare, lookups are on the exit path.</summary>
public sealed class MmioBus
{
    private sealed record Range(ulong Base, ulong Length, IBusDevice Device);
    private volatile Range[] _ranges = [];
    private readonly object _writeLock = new();

    public void Register(IBusDevice device, ulong baseAddress, ulong length)
    {
        lock (_writeLock)
        {
            foreach (var r in _ranges)
                if (baseAddress < r.Base + r.Length && r.Base < baseAddress + length)
                    throw new BusConflictException($"MMIO range 0x{baseAddress:x}+0x{length:x} of {device.Name} overlaps {r.Device.Name} at 0x{r.Base:x}+0x{r.Length:x}.");
            var list = _ranges.ToList();
            list.Add(new Range(baseAddress, length, device));
            list.Sort((a, b) => a.Base.CompareTo(b.Base));
            _ranges = list.ToArray(); // copy-on-write: lookups on vCPU threads take no lock
        }
    }

    public void Unregister(IBusDevice device)
    {
        lock (_writeLock) _ranges = _ranges.Where(r => r.Device != device).ToArray();
    }

    private Range? Find(ulong address)
    {
        var ranges = _ranges;
        int lo = 0, hi = ranges.Length - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            var r = ranges[mid];
            if (address < r.Base) hi = mid - 1;
            else if (address >= r.Base + r.Length) lo = mid + 1;
            else return r;
        }
        return null;
    }

    public bool Read(ulong address, Span<byte> data)
    {
        var r = Find(address);
        if (r is null) { data.Fill(0xff); return false; }
        r.Device.Read(address - r.Base, data);
        return true;
    }

    public bool Write(ulong address, ReadOnlySpan<byte> data)
    {
        var r = Find(address);
        if (r is null) return false;
        r.Device.Write(address - r.Base, data);
        return true;
    }
}
