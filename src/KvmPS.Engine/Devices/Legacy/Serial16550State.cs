using KvmPS.State;

namespace KvmPS.Devices.Legacy;

/// <summary>The UART's registers, FIFO contents and held host input (bytes typed before the guest opened its receiver).</summary>
public sealed record Serial16550State(
    byte Ier, byte Lcr, byte Mcr, byte Lsr, byte Msr, byte Scr, byte Dll, byte Dlm,
    bool ThrEmptyPending, bool FifoEnabled, bool ReceiverOpen, byte[] Receive, byte[] Held)
{
    public const ushort Version = 1;
    /// <summary>Host input the UART queues at most (its input queue limit).</summary>
    public const int MaxQueuedBytes = 4096;

    public void Write(StateWriter w)
    {
        foreach (byte b in new[] { Ier, Lcr, Mcr, Lsr, Msr, Scr, Dll, Dlm }) w.WriteByte(b);
        w.WriteBool(ThrEmptyPending);
        w.WriteBool(FifoEnabled);
        w.WriteBool(ReceiverOpen);
        w.WriteBytes(Receive);
        w.WriteBytes(Held);
    }

    public static Serial16550State Read(StateReader r, ushort version)
    {
        DeviceState.EnsureVersion(r, version, Version);
        var s = new Serial16550State(r.ReadByte(), r.ReadByte(), r.ReadByte(), r.ReadByte(), r.ReadByte(), r.ReadByte(), r.ReadByte(), r.ReadByte(),
            r.ReadBool(), r.ReadBool(), r.ReadBool(), r.ReadBytes(MaxQueuedBytes), r.ReadBytes(MaxQueuedBytes));
        r.EnsureEnd();
        if (s.Ier > 0x0f) throw r.Fail($"IER 0x{s.Ier:x2} has reserved bits set");
        if (s.Mcr > 0x1f) throw r.Fail($"MCR 0x{s.Mcr:x2} has reserved bits set");
        if (!s.ReceiverOpen && s.Receive.Length > 0 && (s.Mcr & 0x10) == 0) throw r.Fail("received bytes while the receiver is closed");
        return s;
    }
}
