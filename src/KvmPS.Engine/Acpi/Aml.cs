using System.Buffers.Binary;
using System.Text;

namespace KvmPS.Acpi;

/// <summary>
/// A small AML encoder (ACPI 6.x, section 20) for what our DSDT needs: named objects (Scope, Device, Name, Method,
/// Mutex, OperationRegion, Field), data (integers, strings, EISA IDs, packages, buffers, resource templates) and the few
/// statements and expressions the hot-plug methods use (Store, If/Else, And/Or, LEqual/LNot, Notify, Acquire/Release,
/// Return, method calls). No loops: ACPICA aborts long ones, and guest CPL0 is emulated slowly here, so the generated
/// AML is straight-line code. Every method returns the encoded bytes.
/// </summary>
public static class Aml
{
    private const byte ZeroOp = 0x00, OneOp = 0x01, OnesOp = 0xFF, BytePrefix = 0x0A, WordPrefix = 0x0B, DWordPrefix = 0x0C,
        StringPrefix = 0x0D, QWordPrefix = 0x0E, NameOp = 0x08, ScopeOp = 0x10, BufferOp = 0x11, PackageOp = 0x12, MethodOp = 0x14,
        ExtOpPrefix = 0x5B, DeviceOp = 0x82, RootChar = 0x5C, DualNamePrefix = 0x2E, MultiNamePrefix = 0x2F,
        Local0Op = 0x60, Arg0Op = 0x68, StoreOp = 0x70, AndOp = 0x7B, OrOp = 0x7D, NotifyOp = 0x86,
        LAndOp = 0x90, LOrOp = 0x91, LNotOp = 0x92, LEqualOp = 0x93, IfOp = 0xA0, ElseOp = 0xA1, ReturnOp = 0xA4;
    // After ExtOpPrefix
    private const byte MutexOp = 0x01, AcquireOp = 0x23, ReleaseOp = 0x27, OpRegionOp = 0x80, FieldOp = 0x81;

    /// <summary>Address spaces of an OperationRegion.</summary>
    public enum RegionSpace : byte { SystemMemory = 0, SystemIO = 1 }

    /// <summary>FieldFlags AccessType (bits 0-3).</summary>
    public enum FieldAccess : byte { Any = 0, Byte = 1, Word = 2, DWord = 3 }

    /// <summary>FieldFlags UpdateRule (bits 5-6): what a write does with the bits of the access unit outside the field.</summary>
    public enum FieldUpdate : byte { Preserve = 0, WriteAsOnes = 1, WriteAsZeros = 2 }

    /// <summary>One element of a Field: a named field of <paramref name="Bits"/> bits, or with a null name that many bits skipped.</summary>
    public readonly record struct FieldUnit(string? Name, int Bits);

    /// <summary>PkgLength: 1 byte up to 63, else a lead byte with the count of following bytes (the length includes itself).</summary>
    public static byte[] PkgLength(int contentLength) => EncodeLength(contentLength, includeSelf: true);

    /// <summary>
    /// The PkgLength encoding of <paramref name="value"/>; a package's length counts its own bytes, a field unit's bit
    /// count does not.
    /// </summary>
    private static byte[] EncodeLength(int value, bool includeSelf)
    {
        for (int n = 1; n <= 4; n++)
        {
            int total = value + (includeSelf ? n : 0);
            if (n == 1 && total < 0x40) return [(byte)total];
            if (n > 1 && total < 1 << (4 + 8 * (n - 1)))
            {
                var b = new byte[n];
                b[0] = (byte)(((n - 1) << 6) | (total & 0xF));
                for (int i = 1; i < n; i++) b[i] = (byte)(total >> (4 + 8 * (i - 1)));
                return b;
            }
        }
        throw new ArgumentOutOfRangeException(nameof(value), $"{value} does not fit an AML PkgLength.");
    }

    /// <summary>
    /// A NameString: an optional leading backslash or carets, then one 4-character segment (padded with '_') or a
    /// dual/multi path.
    /// </summary>
    public static byte[] NameString(string name)
    {
        // Built in one array: the DSDT has hundreds of names, and lists of bytes were most of its build's garbage.
        int prefixes = 0;
        while (prefixes < name.Length && (name[prefixes] == '^' || (prefixes == 0 && name[0] == '\\'))) prefixes++;
        var segs = name[prefixes..].Split('.', StringSplitOptions.RemoveEmptyEntries);
        int header = segs.Length switch { 0 => 1, 1 => 0, 2 => 1, _ => 2 };
        var o = new byte[prefixes + header + 4 * segs.Length];
        for (int i = 0; i < prefixes; i++) o[i] = name[i] == '\\' ? RootChar : (byte)'^';
        int at = prefixes;
        if (segs.Length == 0) o[at] = 0;
        else if (segs.Length == 2) o[at++] = DualNamePrefix;
        else if (segs.Length > 2) { o[at++] = MultiNamePrefix; o[at++] = (byte)segs.Length; }
        foreach (var seg in segs) { WriteNameSeg(seg, o.AsSpan(at, 4)); at += 4; }
        return o;
    }

    private static byte[] NameSeg(string s)
    {
        var o = new byte[4];
        WriteNameSeg(s, o);
        return o;
    }

    private static void WriteNameSeg(string s, Span<byte> into)
    {
        if (s.Length is 0 or > 4 || !(char.IsAsciiLetterUpper(s[0]) || s[0] == '_') || s.AsSpan().ContainsAnyExcept(NameSegChars))
            throw new ArgumentException($"AML name segment '{s}' must be 1-4 characters A-Z, 0-9 or _, not starting with a digit.");
        into.Fill((byte)'_');
        for (int i = 0; i < s.Length; i++) into[i] = (byte)s[i];
    }

    private static readonly System.Buffers.SearchValues<char> NameSegChars = System.Buffers.SearchValues.Create("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_");

    public static byte[] Integer(ulong v) => v switch
    {
        0 => [ZeroOp],
        1 => [OneOp],
        ulong.MaxValue => [OnesOp],
        <= 0xFF => [BytePrefix, (byte)v],
        <= 0xFFFF => [WordPrefix, (byte)v, (byte)(v >> 8)],
        <= 0xFFFF_FFFF => [DWordPrefix, .. LE32((uint)v)],
        _ => [QWordPrefix, .. LE32((uint)v), .. LE32((uint)(v >> 32))],
    };

    public static byte[] String(string s) => [StringPrefix, .. Encoding.ASCII.GetBytes(s), 0];

    /// <summary>EISAID("PNP0A03") as a DWord integer: three 5-bit letters then four hex digits, big-endian in the 32-bit value's byte order.</summary>
    public static byte[] EisaId(string id)
    {
        if (id.Length != 7) throw new ArgumentException("an EISA ID has 7 characters", nameof(id));
        int letters = ((id[0] - 0x40) << 10) | ((id[1] - 0x40) << 5) | (id[2] - 0x40);
        int digits = Convert.ToInt32(id[3..], 16);
        return [DWordPrefix, (byte)(letters >> 8), (byte)letters, (byte)(digits >> 8), (byte)digits];
    }

    public static byte[] Name(string name, byte[] value) => [NameOp, .. NameString(name), .. value];

    public static byte[] Package(params byte[][] elements)
    {
        if (elements.Length > 255) throw new ArgumentOutOfRangeException(nameof(elements));
        byte[] body = [(byte)elements.Length, .. Concat(elements)];
        return [PackageOp, .. PkgLength(body.Length), .. body];
    }

    /// <summary>Buffer() initialized with <paramref name="data"/>.</summary>
    public static byte[] Buffer(ReadOnlySpan<byte> data)
    {
        byte[] body = [.. Integer((ulong)data.Length), .. data];
        return [BufferOp, .. PkgLength(body.Length), .. body];
    }

    public static byte[] Scope(string name, params byte[][] terms)
    {
        byte[] body = [.. NameString(name), .. Concat(terms)];
        return [ScopeOp, .. PkgLength(body.Length), .. body];
    }

    public static byte[] Device(string name, params byte[][] terms)
    {
        byte[] body = [.. NameString(name), .. Concat(terms)];
        return [ExtOpPrefix, DeviceOp, .. PkgLength(body.Length), .. body];
    }

    /// <summary>Method(name, argCount, Serialized|NotSerialized) { terms }, sync level 0.</summary>
    public static byte[] Method(string name, int argCount, bool serialized, params byte[][] terms)
    {
        if (argCount is < 0 or > 7) throw new ArgumentOutOfRangeException(nameof(argCount));
        byte flags = (byte)(argCount | (serialized ? 0x08 : 0));
        byte[] body = [.. NameString(name), flags, .. Concat(terms)];
        return [MethodOp, .. PkgLength(body.Length), .. body];
    }

    /// <summary>Mutex(name, syncLevel).</summary>
    public static byte[] Mutex(string name, byte syncLevel = 0) => [ExtOpPrefix, MutexOp, .. NameString(name), (byte)(syncLevel & 0xF)];

    /// <summary>Acquire(mutex, timeoutMs); 0xFFFF waits forever. Its result (true on timeout) is not used.</summary>
    public static byte[] Acquire(string mutex, ushort timeoutMs = 0xFFFF) => [ExtOpPrefix, AcquireOp, .. NameString(mutex), .. LE16(timeoutMs)];

    public static byte[] Release(string mutex) => [ExtOpPrefix, ReleaseOp, .. NameString(mutex)];

    /// <summary>OperationRegion(name, space, offset, length) with constant offset and length.</summary>
    public static byte[] OperationRegion(string name, RegionSpace space, ulong offset, ulong length)
        => [ExtOpPrefix, OpRegionOp, .. NameString(name), (byte)space, .. Integer(offset), .. Integer(length)];

    /// <summary>Field(region, access, NoLock, update) { units }.</summary>
    public static byte[] Field(string region, FieldAccess access, FieldUpdate update, params FieldUnit[] units)
    {
        var list = new List<byte>();
        foreach (var u in units)
        {
            if (u.Bits <= 0) throw new ArgumentOutOfRangeException(nameof(units), $"field unit {u.Name ?? "(reserved)"} has {u.Bits} bits.");
            if (u.Name is null) list.Add(0x00); // ReservedField
            else list.AddRange(NameSeg(u.Name));
            list.AddRange(EncodeLength(u.Bits, includeSelf: false));
        }
        byte flags = (byte)((byte)access | ((byte)update << 5));
        byte[] body = [.. NameString(region), flags, .. list];
        return [ExtOpPrefix, FieldOp, .. PkgLength(body.Length), .. body];
    }

    // ---- statements and expressions ----

    public static byte[] Local(int n) => n is >= 0 and <= 7 ? [(byte)(Local0Op + n)] : throw new ArgumentOutOfRangeException(nameof(n));
    public static byte[] Arg(int n) => n is >= 0 and <= 6 ? [(byte)(Arg0Op + n)] : throw new ArgumentOutOfRangeException(nameof(n));

    /// <summary>A reference to a named object (as an operand or a target).</summary>
    public static byte[] Ref(string name) => NameString(name);

    /// <summary>Target "none": the result of an And/Or is only returned.</summary>
    public static byte[] NoTarget => [0x00];

    public static byte[] Store(byte[] source, byte[] target) => [StoreOp, .. source, .. target];
    public static byte[] And(byte[] a, byte[] b, byte[]? target = null) => [AndOp, .. a, .. b, .. target ?? NoTarget];
    public static byte[] Or(byte[] a, byte[] b, byte[]? target = null) => [OrOp, .. a, .. b, .. target ?? NoTarget];
    public static byte[] LEqual(byte[] a, byte[] b) => [LEqualOp, .. a, .. b];
    public static byte[] LNot(byte[] a) => [LNotOp, .. a];
    public static byte[] LAnd(byte[] a, byte[] b) => [LAndOp, .. a, .. b];
    public static byte[] LOr(byte[] a, byte[] b) => [LOrOp, .. a, .. b];
    public static byte[] Notify(string device, byte[] value) => [NotifyOp, .. NameString(device), .. value];
    public static byte[] Return(byte[] value) => [ReturnOp, .. value];

    /// <summary>Calls a method with its arguments (the method's declared argument count must match).</summary>
    public static byte[] Call(string method, params byte[][] args) => [.. NameString(method), .. Concat(args)];

    public static byte[] If(byte[] predicate, params byte[][] terms)
    {
        byte[] body = [.. predicate, .. Concat(terms)];
        return [IfOp, .. PkgLength(body.Length), .. body];
    }

    /// <summary>The Else of the If just before it.</summary>
    public static byte[] Else(params byte[][] terms)
    {
        byte[] body = Concat(terms);
        return [ElseOp, .. PkgLength(body.Length), .. body];
    }

    // ---- resource templates ----

    /// <summary>Buffer() holding a resource template: the descriptors followed by an End Tag (checksum 0).</summary>
    public static byte[] ResourceTemplate(params byte[][] descriptors) => Buffer([.. Concat(descriptors), 0x79, 0x00]);

    /// <summary>Word Address Space Descriptor; resourceType 1 = I/O range, 2 = bus number range. Min and max fixed, producer.</summary>
    public static byte[] WordAddressSpace(byte resourceType, ushort min, ushort max, byte typeFlags = 0)
    {
        ushort len = (ushort)(max - min + 1);
        return [0x88, 0x0D, 0x00, resourceType, 0x0C, typeFlags, .. LE16(0), .. LE16(min), .. LE16(max), .. LE16(0), .. LE16(len)];
    }

    /// <summary>DWord memory range (min/max fixed, producer, read-write, non-cacheable).</summary>
    public static byte[] DWordMemory(uint min, uint max)
        => [0x87, 0x17, 0x00, 0x00, 0x0C, 0x01, .. LE32(0), .. LE32(min), .. LE32(max), .. LE32(0), .. LE32(max - min + 1)];

    /// <summary>QWord memory range (min/max fixed, producer, read-write, cacheable + prefetchable).</summary>
    public static byte[] QWordMemory(ulong min, ulong max)
        => [0x8A, 0x2B, 0x00, 0x00, 0x0C, 0x07, .. LE64(0), .. LE64(min), .. LE64(max), .. LE64(0), .. LE64(max - min + 1)];

    /// <summary>I/O Port Descriptor with 16-bit decode, fixed base.</summary>
    public static byte[] IoPort(ushort port, byte length) => [0x47, 0x01, .. LE16(port), .. LE16(port), 0x01, length];

    /// <summary>32-bit fixed memory range, read-write.</summary>
    public static byte[] Memory32Fixed(uint baseAddress, uint length) => [0x86, 0x09, 0x00, 0x01, .. LE32(baseAddress), .. LE32(length)];

    private static byte[] Concat(byte[][] parts)
    {
        int n = 0;
        foreach (var p in parts) n += p.Length;
        var all = new byte[n];
        int at = 0;
        foreach (var p in parts) { p.CopyTo(all, at); at += p.Length; }
        return all;
    }

    private static byte[] LE16(ushort v) => [(byte)v, (byte)(v >> 8)];
    private static byte[] LE32(uint v) { var b = new byte[4]; BinaryPrimitives.WriteUInt32LittleEndian(b, v); return b; }
    private static byte[] LE64(ulong v) { var b = new byte[8]; BinaryPrimitives.WriteUInt64LittleEndian(b, v); return b; }
}
