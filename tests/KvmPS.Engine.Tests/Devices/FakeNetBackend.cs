using KvmPS.Devices.Virtio.Net;

namespace KvmPS.Engine.Tests.Devices;

/// <summary>A back-end in memory: packets to receive are queued by the test, sent ones are collected.</summary>
internal sealed class FakeNetBackend : INetBackend
{
    public readonly Queue<byte[]> Incoming = new();
    public readonly List<byte[]> Sent = new();
    public int Arms;
    public string Name => "fake0";
    public Action? ReceiveReady { get; set; }
    public bool Send(ReadOnlySpan<byte> packet) { Sent.Add(packet.ToArray()); return true; }
    public int Receive(Span<byte> buffer)
    {
        if (!Incoming.TryDequeue(out var p)) return 0;
        int n = Math.Min(p.Length, buffer.Length);
        p.AsSpan(0, n).CopyTo(buffer);
        return n;
    }
    public void ArmReceive() => Arms++;
    public void Dispose() { }
}
