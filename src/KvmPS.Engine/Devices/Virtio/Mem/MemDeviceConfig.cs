using System.Numerics;
using System.Text.Json;
using KvmPS.Devices.Config;

namespace KvmPS.Devices.Virtio.Mem;

/// <summary>
/// virtio-mem over the hot-plug region (memory_maximum_bytes − memory_bytes). The VMM adds one by itself when the
/// maximum is above the boot memory; <c>block_size_bytes</c> (a power of two, 2 MiB to 1 GiB, default 2 MiB as QEMU
/// and Cloud Hypervisor use) is the plug granularity.
/// </summary>
public sealed record MemDeviceConfig : DeviceConfig
{
    public const string TypeName = "mem";
    public const ulong MinBlockSizeBytes = 2UL << 20, MaxBlockSizeBytes = 1UL << 30;
    public override string Type => TypeName;
    public ulong BlockSizeBytes { get; init; } = VirtioMem.DefaultBlockSizeBytes;

    public static MemDeviceConfig Parse(DeviceOptions options)
    {
        ulong blockSize = (ulong)options.Int("block_size_bytes", (long)VirtioMem.DefaultBlockSizeBytes, (long)MinBlockSizeBytes, (long)MaxBlockSizeBytes);
        if (!BitOperations.IsPow2(blockSize))
            throw new DeviceConfigException($"{options.Source}: block_size_bytes {blockSize} is not a power of two.");
        options.EnsureAllUsed();
        return new MemDeviceConfig { BlockSizeBytes = blockSize };
    }

    public override IVirtioDevice CreateDevice(DeviceContext context) => new VirtioMem(context.Memory, BlockSizeBytes, context.Log);

    public override void Describe(Utf8JsonWriter w) => w.WriteNumber("block_size_bytes", BlockSizeBytes);
}
