namespace KvmPS.Devices.Legacy;

/// <summary>QEMU's isa-debug-exit at port 0xf4: a guest write of v ends the VMM with status (v &lt;&lt; 1) | 1.</summary>
public sealed class DebugExit(IMachineControl machine) : IBusDevice
{
    public const ushort Port = 0xf4;
    public string Name => "debug-exit";

    public void Read(ulong offset, Span<byte> data) => data.Fill(0xff);

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (offset != 0 || data.Length == 0) return;
        int value = data.Length switch
        {
            1 => data[0],
            2 => BitConverter.ToUInt16(data),
            _ => (int)BitConverter.ToUInt32(data),
        };
        machine.RequestDebugExit(value);
    }
}
