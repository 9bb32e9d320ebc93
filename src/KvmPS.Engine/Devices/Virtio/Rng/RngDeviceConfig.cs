using System.Text.Json;
using KvmPS.Devices.Config;
using KvmPS.Devices.Virtio;

namespace KvmPS.Devices.Virtio.Rng;

/// <summary>virtio-rng: entropy from the host's getrandom. No options.</summary>
public sealed record RngDeviceConfig : DeviceConfig
{
    public override string Type => "rng";

    public static RngDeviceConfig Parse(DeviceOptions options)
    {
        options.EnsureAllUsed();
        return new RngDeviceConfig();
    }

    public override IVirtioDevice CreateDevice(DeviceContext context) => new VirtioRng();
    public override void Describe(Utf8JsonWriter w) { }
}
