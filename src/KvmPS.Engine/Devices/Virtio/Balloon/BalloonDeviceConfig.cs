using System.Text.Json;
using KvmPS.Devices.Config;
using KvmPS.Devices.Virtio;

namespace KvmPS.Devices.Virtio.Balloon;

/// <summary>
/// virtio-balloon: the host asks the guest for memory (balloon.set) and gets the guest's statistics (balloon.get).
/// <c>deflate_on_oom</c> offers VIRTIO_BALLOON_F_DEFLATE_ON_OOM; <c>stats_interval_s</c> &gt; 0 asks the driver for
/// fresh statistics that often (0: the device keeps whatever the driver sent last).
/// </summary>
public sealed record BalloonDeviceConfig : DeviceConfig
{
    public override string Type => "balloon";
    public bool DeflateOnOom { get; init; }
    public int StatsIntervalSeconds { get; init; }

    public static BalloonDeviceConfig Parse(DeviceOptions options)
    {
        var config = new BalloonDeviceConfig
        {
            DeflateOnOom = options.Bool("deflate_on_oom", false),
            StatsIntervalSeconds = (int)options.Int("stats_interval_s", 0, 0, 3600),
        };
        options.EnsureAllUsed();
        return config;
    }

    public override IVirtioDevice CreateDevice(DeviceContext context)
        => new VirtioBalloon(context.Memory, DeflateOnOom, StatsIntervalSeconds, context.Log);

    public override void Describe(Utf8JsonWriter w)
    {
        w.WriteBoolean("deflate_on_oom", DeflateOnOom);
        w.WriteNumber("stats_interval_s", StatsIntervalSeconds);
    }
}
