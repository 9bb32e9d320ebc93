namespace KvmPS.Devices.Legacy;

/// <summary>
/// QEMU's ISA debug console ("debugcon"): every byte written to port 0x402 goes to a sink; reading the port returns
/// 0xE9, which is how SeaBIOS decides the port is there and sends its debug log to it.
/// </summary>
public sealed class DebugCon(ByteSink output) : IBusDevice
{
    public const ushort Port = 0x402;
    public const byte ReadBack = 0xE9;

    public string Name => "debugcon";

    public void Read(ulong offset, Span<byte> data) => data.Fill(ReadBack);

    public void Write(ulong offset, ReadOnlySpan<byte> data) => output(data[..1]);
}
