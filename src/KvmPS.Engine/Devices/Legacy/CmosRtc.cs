using KvmPS.State;

namespace KvmPS.Devices.Legacy;

/// <summary>
/// MC146818 CMOS RTC at ports 0x70/0x71: the time of day from the host clock (BCD, 24-hour), status registers,
/// and the CMOS memory bytes firmware reads (memory size).
/// </summary>
public sealed class CmosRtc : IBusDevice, IPersistent
{
    public const ushort IndexPort = 0x70;
    private readonly object _lock = new();
    private readonly byte[] _cmos = new byte[128];
    private byte _index;

    public string Name => "cmos-rtc";

    public CmosRtc(ulong memoryBytes)
    {
        _cmos[0x0A] = 0x26; // 32.768 kHz time base, 1024 Hz periodic rate
        _cmos[0x0B] = 0x02; // 24-hour, BCD
        _cmos[0x0D] = 0x80; // valid RAM and time
        // Extended memory above 1 MiB in KiB (capped) and above 16 MiB in 64 KiB units: what BIOSes read.
        ulong low = Math.Min(memoryBytes, 0xC000_0000UL);
        ulong ext1k = Math.Min((low - Math.Min(low, 1UL << 20)) >> 10, 0xFFFF);
        _cmos[0x17] = _cmos[0x30] = (byte)ext1k;
        _cmos[0x18] = _cmos[0x31] = (byte)(ext1k >> 8);
        ulong ext64k = Math.Min((low - Math.Min(low, 16UL << 20)) >> 16, 0xFFFF);
        _cmos[0x34] = (byte)ext64k;
        _cmos[0x35] = (byte)(ext64k >> 8);
        ulong high = memoryBytes > low ? (memoryBytes - low) >> 16 : 0;
        _cmos[0x5b] = (byte)high; _cmos[0x5c] = (byte)(high >> 8); _cmos[0x5d] = (byte)(high >> 16);
    }

    private static byte Bcd(int v) => (byte)(((v / 10) << 4) | (v % 10));

    public void Read(ulong offset, Span<byte> data)
    {
        lock (_lock)
        {
            if (offset == 0) { data[0] = _index; return; }
            var now = DateTime.UtcNow;
            data[0] = _index switch
            {
                0x00 => Bcd(now.Second),
                0x02 => Bcd(now.Minute),
                0x04 => Bcd(now.Hour),
                0x06 => (byte)((int)now.DayOfWeek + 1),
                0x07 => Bcd(now.Day),
                0x08 => Bcd(now.Month),
                0x09 => Bcd(now.Year % 100),
                0x32 => Bcd(now.Year / 100),
                0x0A => (byte)(_cmos[0x0A] & 0x7f), // update-in-progress never set
                _ => _cmos[_index],
            };
        }
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        lock (_lock)
        {
            if (offset == 0) _index = (byte)(data[0] & 0x7f); // bit 7 is the NMI mask
            else if (_index is >= 0x0A and not 0x0C and not 0x0D) _cmos[_index] = data[0];
        }
    }

    // ---- state ----
    public string StateName => "cmos-rtc";
    public ushort StateVersion => CmosRtcState.Version;

    public CmosRtcState CaptureState() { lock (_lock) return new CmosRtcState(_index, (byte[])_cmos.Clone()); }
    public void SaveState(StateWriter writer) => CaptureState().Write(writer);

    public void RestoreState(StateReader reader, ushort version)
    {
        var s = CmosRtcState.Read(reader, version);
        lock (_lock)
        {
            _index = s.Index;
            s.Cmos.CopyTo(_cmos, 0);
        }
    }
}
