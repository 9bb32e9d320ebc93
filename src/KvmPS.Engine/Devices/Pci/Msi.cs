namespace KvmPS.Devices.Pci;

/// <summary>
/// The vectors of one message-signalled interrupt mechanism, MSI or MSI-X, as a device that signals them from outside
/// (a passthrough function's eventfds) drives them: whether a vector is deliverable now, its KVM route, and a signal
/// that is delivered or latched as pending. Not thread-safe: the owning device calls it under its own lock.
/// </summary>
public interface IMsiVectors
{
    /// <summary>Vectors the guest enabled (MSI: 2^multiple-message-enable; MSI-X: the table size).</summary>
    int VectorCount { get; }
    bool Enabled { get; }
    /// <summary>A signal on vector <paramref name="v"/> would be delivered now (enabled, not masked).</summary>
    bool IsDeliverable(int v);
    /// <summary>The vector's route, created if needed and programmed with its current message; null without a controller.</summary>
    IMsiRoute? RouteFor(int v);
    /// <summary>Signals vector <paramref name="v"/>: delivered now, or latched as pending while masked. False if the vector does not exist.</summary>
    bool Notify(int v);
}

/// <summary>
/// An emulated MSI capability (PCI Local Bus 3.0 §6.8.1), the registers after the ID and next pointer: message control
/// (enable, multiple message capable/enable, 64-bit, per-vector masking), message address (upper half when 64-bit),
/// data, and the mask and pending bits when the function has per-vector masking. Guest writes behave like hardware:
/// read-only and reserved bits keep their value, a multiple-message enable above what the function is capable of is
/// capped, the address's two low bits read as zero. Vector n of several sends the data with its low log2(count) bits
/// replaced by n. Not thread-safe: the owning device calls it under its own lock.
/// </summary>
public sealed class MsiCapability : IMsiVectors, IDisposable
{
    public const ushort ControlEnable = 0x0001, Control64Bit = 0x0080, ControlPerVectorMask = 0x0100;
    private const int MaxLog2Vectors = 5; // 32 vectors
    private readonly IMsiController? _controller;
    private readonly IMsiRoute?[] _routes;
    private readonly int _log2Capable;
    private uint _addressLow, _addressHigh, _mask, _pending;
    private ushort _data;
    private int _log2Enabled;
    private bool _disposed;

    /// <summary>
    /// The capability as the device reports it: its message control register says what it is capable of;
    /// <paramref name="maxVectors"/> (what the device can signal, a power of two or not) may cap that further.
    /// </summary>
    public MsiCapability(ushort deviceControl, IMsiController? controller, int maxVectors = 32)
    {
        Is64Bit = (deviceControl & Control64Bit) != 0;
        PerVectorMask = (deviceControl & ControlPerVectorMask) != 0;
        int log2Max = maxVectors >= 1 ? System.Numerics.BitOperations.Log2((uint)maxVectors) : 0;
        _log2Capable = Math.Min(Math.Min((deviceControl >> 1) & 7, MaxLog2Vectors), log2Max); // 6 and 7 are reserved
        _controller = controller;
        _routes = new IMsiRoute?[CapableVectors];
    }

    public bool Is64Bit { get; }
    public bool PerVectorMask { get; }
    public bool Enabled { get; private set; }
    public int CapableVectors => 1 << _log2Capable;
    public int VectorCount => 1 << _log2Enabled;
    /// <summary>Bytes from the capability's start (ID, next pointer included): 10, 14, 20 or 24.</summary>
    public int Size => 10 + (Is64Bit ? 4 : 0) + (PerVectorMask ? 10 : 0);
    public ulong Address => (Is64Bit ? (ulong)_addressHigh << 32 : 0) | _addressLow;
    public uint MaskBits => _mask;
    public uint PendingBits => _pending;
    private int DataAt => Is64Bit ? 12 : 8;
    private int MaskAt => DataAt + 4;
    private uint VectorBits => CapableVectors == 32 ? uint.MaxValue : (1u << CapableVectors) - 1;

    /// <summary>The data vector <paramref name="v"/> sends: the programmed data with its low log2(enabled) bits set to v.</summary>
    public uint Data(int v) => (uint)(_data & ~(VectorCount - 1)) | (uint)v;
    public bool IsMasked(int v) => PerVectorMask && (_mask & (1u << v)) != 0;
    public bool IsPending(int v) => (_pending & (1u << v)) != 0;
    public bool IsDeliverable(int v) => Enabled && (uint)v < (uint)VectorCount && !IsMasked(v);

    /// <summary>Power-on state: disabled, one message, nothing masked or pending, no message programmed.</summary>
    public void Reset()
    {
        Enabled = false;
        _log2Enabled = 0;
        _addressLow = _addressHigh = _mask = _pending = 0;
        _data = 0;
    }

    private ushort Control => (ushort)((Enabled ? ControlEnable : 0) | _log2Capable << 1 | _log2Enabled << 4 | (Is64Bit ? Control64Bit : 0) | (PerVectorMask ? ControlPerVectorMask : 0));

    /// <summary>The register image from offset 2 (message control) to <see cref="Size"/>, little-endian.</summary>
    private void Image(Span<byte> image)
    {
        image.Clear();
        Put(image, 2, Control, 2);
        Put(image, 4, _addressLow, 4);
        if (Is64Bit) Put(image, 8, _addressHigh, 4);
        Put(image, DataAt, _data, 2);
        if (PerVectorMask)
        {
            Put(image, MaskAt, _mask, 4);
            Put(image, MaskAt + 4, _pending, 4);
        }
    }

    private static void Put(Span<byte> image, int at, uint value, int bytes)
    {
        for (int i = 0; i < bytes; i++) image[at + i] = (byte)(value >> (8 * i));
    }

    private static uint Get(ReadOnlySpan<byte> image, int at, int bytes)
    {
        uint v = 0;
        for (int i = 0; i < bytes; i++) v |= (uint)image[at + i] << (8 * i);
        return v;
    }

    /// <summary>Reads the byte at <paramref name="offset"/> from the capability's start (2 ≤ offset &lt; <see cref="Size"/>).</summary>
    public byte ReadByte(int offset)
    {
        Span<byte> image = stackalloc byte[24];
        Image(image);
        return (uint)offset < (uint)Size ? image[offset] : (byte)0;
    }

    /// <summary>
    /// Applies a guest write of <paramref name="data"/> at <paramref name="offset"/> from the capability's start (bytes
    /// outside 2..Size are ignored). Writable: enable, multiple message enable (capped), address, data, mask bits of
    /// vectors the function has. Unmasking or enabling delivers what is pending.
    /// </summary>
    public void Write(int offset, ReadOnlySpan<byte> data)
    {
        Span<byte> image = stackalloc byte[24];
        Image(image);
        for (int i = 0; i < data.Length; i++)
        {
            int at = offset + i;
            if (at >= 2 && at < Size) image[at] = data[i];
        }
        ushort control = (ushort)Get(image, 2, 2);
        Enabled = (control & ControlEnable) != 0;
        _log2Enabled = Math.Min((control >> 4) & 7, _log2Capable);
        _addressLow = Get(image, 4, 4) & ~3u;
        if (Is64Bit) _addressHigh = Get(image, 8, 4);
        _data = (ushort)Get(image, DataAt, 2);
        if (PerVectorMask) _mask = Get(image, MaskAt, 4) & VectorBits;
        Refresh();
    }

    public IMsiRoute? RouteFor(int v)
    {
        if (_controller is null || _disposed || (uint)v >= (uint)CapableVectors) return null;
        var route = _routes[v] ??= _controller.CreateRoute();
        route.Configure(Address, Data(v));
        return route;
    }

    public bool Notify(int v)
    {
        if ((uint)v >= (uint)VectorCount) return false;
        if (!Enabled) return true; // MSI off: the function would not send it (without masking there is nowhere to latch)
        if (IsMasked(v)) { _pending |= 1u << v; return true; }
        Deliver(v);
        return true;
    }

    /// <summary>Keeps the routes of deliverable vectors on the current message and delivers pending ones no longer masked.</summary>
    private void Refresh()
    {
        for (int v = 0; v < CapableVectors; v++)
        {
            if (!IsDeliverable(v)) continue;
            if (_routes[v] is { } route) route.Configure(Address, Data(v));
            if (IsPending(v))
            {
                _pending &= ~(1u << v);
                Deliver(v);
            }
        }
    }

    private void Deliver(int v)
    {
        if (RouteFor(v) is { } route) route.Fire();
    }

    public void Dispose()
    {
        _disposed = true;
        for (int v = 0; v < _routes.Length; v++)
        {
            _routes[v]?.Dispose();
            _routes[v] = null;
        }
    }
}
