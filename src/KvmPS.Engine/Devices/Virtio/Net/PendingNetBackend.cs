namespace KvmPS.Devices.Virtio.Net;

/// <summary>
/// The back-end of a live upgrade's destination until the running VMM hands its open tap over
/// (<see cref="VirtioNet.AdoptBackend"/>): it knows the tap's name (the state record checks it) and holds nothing. No
/// vCPU runs before the hand-over; a frame sent meanwhile would be dropped and counted.
/// </summary>
internal sealed class PendingNetBackend(string name) : INetBackend
{
    public string Name => name;
    public Action? ReceiveReady { get; set; }
    public bool Send(ReadOnlySpan<byte> packet) => false;
    public int Receive(Span<byte> buffer) => 0;
    public void ArmReceive() { }
    public void Dispose() { }
}
