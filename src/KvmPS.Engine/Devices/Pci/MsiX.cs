using System.Buffers.Binary;
using KvmPS.Interop;
using KvmPS.State;

namespace KvmPS.Devices.Pci;

/// <summary>Delivers MSI messages for a VM (KVM GSI routes + irqfd in the VMM, a recorder in tests).</summary>
public interface IMsiController
{
    /// <summary>A delivery path for one vector; its message is set with <see cref="IMsiRoute.Configure"/> before it fires.</summary>
    IMsiRoute CreateRoute();
}

public interface IMsiRoute : IDisposable
{
    /// <summary>Sets the message (address, data) the route delivers; cheap when unchanged.</summary>
    void Configure(ulong address, uint data);
    /// <summary>Delivers the message once (edge).</summary>
    void Fire();
}

/// <summary>
/// A route whose GSI also takes eventfds the VMM does not signal itself (KVM_IRQFD): a passthrough device's own vector
/// eventfd bound here raises the interrupt inside KVM, with no VMM thread in between.
/// </summary>
public interface IIrqfdRoute : IMsiRoute
{
    /// <summary>True while the route carries a message KVM accepted (a refused one would deliver nothing).</summary>
    bool Ready { get; }
    /// <summary>Binds <paramref name="eventFd"/> to the route's GSI (KVM_IRQFD); throws when KVM refuses.</summary>
    void Bind(EventFdHandle eventFd);
    /// <summary>Unbinds it (KVM_IRQFD deassign); a signal after this stays counted in the eventfd. No-op if not bound.</summary>
    void Unbind(EventFdHandle eventFd);
}

/// <summary>
/// MSI-X state of one function: the vector table and pending-bit array (both live in a BAR; the owner forwards
/// accesses) and the enable/function-mask bits from the capability's message control register.
/// Not thread-safe by itself: the owning device calls it under its own lock.
/// </summary>
public sealed class MsiXTable : IMsiVectors, IDisposable
{
    public const int EntrySize = 16;
    private const uint VectorMasked = 1;
    private readonly byte[] _table;
    private readonly ulong[] _pending;
    private readonly IMsiRoute?[] _routes;
    private readonly IMsiController? _controller;
    private bool _disposed;

    public int VectorCount { get; }
    public bool Enabled { get; private set; }
    public bool FunctionMasked { get; private set; }
    public int TableBytes => _table.Length;
    public int PbaBytes => _pending.Length * 8;
    /// <summary>After <see cref="Dispose"/> nothing is delivered and no route is created again (vectors only latch as pending).</summary>
    public bool IsDisposed => _disposed;

    public MsiXTable(int vectorCount, IMsiController? controller)
    {
        if (vectorCount < 1 || vectorCount > 2048) throw new ArgumentOutOfRangeException(nameof(vectorCount));
        VectorCount = vectorCount;
        _controller = controller;
        _table = new byte[vectorCount * EntrySize];
        _pending = new ulong[(vectorCount + 63) / 64];
        _routes = new IMsiRoute?[vectorCount];
        Reset();
    }

    /// <summary>Power-on state: every vector masked, MSI-X disabled, nothing pending.</summary>
    public void Reset()
    {
        Array.Clear(_table);
        for (int v = 0; v < VectorCount; v++) BinaryPrimitives.WriteUInt32LittleEndian(_table.AsSpan(v * EntrySize + 12), VectorMasked);
        Array.Clear(_pending);
        Enabled = FunctionMasked = false;
    }

    public MsiXState CaptureState() => new(VectorCount, (byte[])_table.Clone(), (ulong[])_pending.Clone(), Enabled, FunctionMasked);

    /// <summary>
    /// Puts a saved table back without delivering anything: pending vectors stay pending until the guest unmasks
    /// them or the device signals again (routes are created on the first delivery). Refuses a table of another size.
    /// </summary>
    public void RestoreState(MsiXState state, StateReader reader)
    {
        if (state.VectorCount != VectorCount || state.Table.Length != _table.Length || state.Pending.Length != _pending.Length)
            throw reader.Fail($"the MSI-X table has {state.VectorCount} vectors, the device {VectorCount}");
        for (int v = 0; v < VectorCount; v++)
        {
            uint control = BinaryPrimitives.ReadUInt32LittleEndian(state.Table.AsSpan(v * EntrySize + 12));
            if ((control & ~VectorMasked) != 0) throw reader.Fail($"MSI-X vector {v} has reserved control bits 0x{control:x}");
        }
        if (VectorCount % 64 != 0 && (state.Pending[^1] >> (VectorCount % 64)) != 0)
            throw reader.Fail("MSI-X pending bits are set beyond the last vector");
        state.Table.CopyTo(_table, 0);
        state.Pending.CopyTo(_pending, 0);
        Enabled = state.Enabled;
        FunctionMasked = state.FunctionMasked;
    }

    public ulong Address(int v) => BinaryPrimitives.ReadUInt64LittleEndian(_table.AsSpan(v * EntrySize));
    public uint Data(int v) => BinaryPrimitives.ReadUInt32LittleEndian(_table.AsSpan(v * EntrySize + 8));
    public bool IsMasked(int v) => (BinaryPrimitives.ReadUInt32LittleEndian(_table.AsSpan(v * EntrySize + 12)) & VectorMasked) != 0;
    public bool IsPending(int v) => (_pending[v / 64] & (1UL << (v % 64))) != 0;
    /// <summary>A signal on vector <paramref name="v"/> would be delivered now (MSI-X on, neither function nor vector masked).</summary>
    public bool IsDeliverable(int v) => Enabled && !FunctionMasked && !IsMasked(v);

    /// <summary>
    /// The route of vector <paramref name="v"/>, created if needed and programmed with the vector's current message;
    /// null without a controller or after <see cref="Dispose"/>. A passthrough device binds its eventfd to it.
    /// </summary>
    public IMsiRoute? RouteFor(int v)
    {
        if (_controller is null || _disposed || (uint)v >= (uint)VectorCount) return null;
        var route = _routes[v] ??= _controller.CreateRoute();
        route.Configure(Address(v), Data(v));
        return route;
    }

    public void TableRead(ulong offset, Span<byte> data)
    {
        for (int i = 0; i < data.Length; i++)
        {
            ulong o = offset + (ulong)i;
            data[i] = o < (ulong)_table.Length ? _table[o] : (byte)0;
        }
    }

    public void TableWrite(ulong offset, ReadOnlySpan<byte> data)
    {
        int first = int.MaxValue, last = -1;
        for (int i = 0; i < data.Length; i++)
        {
            ulong o = offset + (ulong)i;
            if (o >= (ulong)_table.Length) continue;
            int inEntry = (int)(o % EntrySize);
            byte v = data[i];
            if (inEntry == 12) v &= (byte)VectorMasked; // vector control: only the mask bit is implemented
            else if (inEntry > 12) v = 0;
            _table[o] = v;
            int vector = (int)(o / EntrySize);
            first = Math.Min(first, vector);
            last = Math.Max(last, vector);
        }
        for (int v = Math.Max(first, 0); v <= last; v++) Refresh(v);
    }

    public void PbaRead(ulong offset, Span<byte> data)
    {
        for (int i = 0; i < data.Length; i++)
        {
            ulong o = offset + (ulong)i;
            data[i] = o < (ulong)PbaBytes ? (byte)(_pending[o / 8] >> (int)(o % 8 * 8)) : (byte)0;
        }
    }

    /// <summary>Applies the message control bits (enable, function mask); unmasking delivers pending vectors.</summary>
    public void SetControl(bool enabled, bool functionMasked)
    {
        Enabled = enabled;
        FunctionMasked = functionMasked;
        for (int v = 0; v < VectorCount; v++) Refresh(v);
    }

    /// <summary>Signals vector <paramref name="vector"/>: delivered now, or latched in the PBA while masked. False if the vector does not exist.</summary>
    public bool Notify(int vector)
    {
        if ((uint)vector >= (uint)VectorCount) return false;
        if (!Enabled || FunctionMasked || IsMasked(vector))
        {
            _pending[vector / 64] |= 1UL << (vector % 64);
            return true;
        }
        Deliver(vector);
        return true;
    }

    private void Refresh(int v)
    {
        if (!Enabled || FunctionMasked || IsMasked(v)) return;
        if (_routes[v] is { } route) route.Configure(Address(v), Data(v)); // keep the route current while unmasked
        if (IsPending(v))
        {
            _pending[v / 64] &= ~(1UL << (v % 64));
            Deliver(v);
        }
    }

    private void Deliver(int v)
    {
        if (_controller is null || _disposed) return; // a route created now would leak its eventfd and GSI
        var route = _routes[v] ??= _controller.CreateRoute();
        route.Configure(Address(v), Data(v));
        route.Fire();
    }

    public void Dispose()
    {
        _disposed = true;
        for (int v = 0; v < VectorCount; v++)
        {
            _routes[v]?.Dispose();
            _routes[v] = null;
        }
    }
}
