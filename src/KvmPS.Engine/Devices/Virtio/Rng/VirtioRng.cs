using System.Security.Cryptography;
using KvmPS.State;

namespace KvmPS.Devices.Virtio.Rng;

/// <summary>
/// virtio entropy device (type 4): one request queue; each device-writable buffer is filled from the host's
/// CSPRNG (getrandom through <see cref="RandomNumberGenerator"/>). No device configuration, no feature bits.
/// </summary>
public sealed class VirtioRng : IVirtioDevice, IPersistent
{
    public const ushort QueueSize = 256;
    /// <summary>Bytes served per request at most (a larger buffer is filled partially, as the spec allows).</summary>
    public const ulong MaxBytesPerRequest = 64 * 1024;
    private readonly DescriptorChain _chain = new();

    /// <summary>
    /// Draws once here, on the thread that builds the machine: the first draw loads the CSPRNG's library (OpenSSL's
    /// libcrypto: files opened, code mapped), which the device I/O thread that serves the queue may not do in the
    /// sandbox (docs/confinement.md); later draws are getrandom.
    /// </summary>
    public VirtioRng()
    {
        Span<byte> warmUp = stackalloc byte[1];
        RandomNumberGenerator.Fill(warmUp);
    }

    public string Name => "virtio-rng";
    public ushort DeviceType => 4;
    public uint PciClassCode => 0x00FF00; // PCI_CLASS_OTHERS, as QEMU presents virtio-rng
    public int QueueCount => 1;
    public ushort MaxQueueSize(int queue) => QueueSize;
    public ulong DeviceFeatures => 0;
    public int ConfigSize => 0;
    public ulong BytesServed { get; private set; }

    public void ReadConfig(int offset, Span<byte> data) => data.Clear();
    public void WriteConfig(int offset, ReadOnlySpan<byte> data) { }
    public void Activate(IVirtioContext context) { }
    public void Reset() { }

    public void ProcessQueue(IVirtioContext context, int queue)
    {
        if (queue != 0 || context.Queue(0) is not { } q) return;
        if (q.DrainAvailable(_chain, (Device: this, Memory: context.Memory), static (s, chain) =>
            {
                ulong n = chain.FillWritable(s.Memory, MaxBytesPerRequest, static span => RandomNumberGenerator.Fill(span));
                s.Device.BytesServed += n;
                return (uint)n;
            }))
            context.NotifyUsed(0);
    }

    public string StateName => Name;
    public ushort StateVersion => VirtioRngState.Version;
    public void SaveState(StateWriter writer) => new VirtioRngState(BytesServed).Write(writer);
    public void RestoreState(StateReader reader, ushort version) => BytesServed = VirtioRngState.Read(reader, version).BytesServed;

    public void Dispose() { }
}
