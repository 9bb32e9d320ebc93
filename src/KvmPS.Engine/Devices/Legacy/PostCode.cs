using KvmPS.State;

namespace KvmPS.Devices.Legacy;

/// <summary>Port 0x80: guests write POST codes and use it as an I/O delay. Counted, otherwise ignored.</summary>
public sealed class PostCode : IBusDevice, IPersistent
{
    public const ushort Port = 0x80;
    private long _writes;
    public string Name => "post-code";
    public long Writes => Interlocked.Read(ref _writes);
    public byte LastCode { get; private set; }
    public void Read(ulong offset, Span<byte> data) => data.Fill(LastCode);
    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (data.Length > 0) LastCode = data[0];
        Interlocked.Increment(ref _writes);
    }

    public string StateName => "post-code";
    public ushort StateVersion => PostCodeState.Version;
    public void SaveState(StateWriter writer) => new PostCodeState(LastCode, Writes).Write(writer);

    public void RestoreState(StateReader reader, ushort version)
    {
        var s = PostCodeState.Read(reader, version);
        LastCode = s.LastCode;
        Interlocked.Exchange(ref _writes, s.Writes);
    }
}
