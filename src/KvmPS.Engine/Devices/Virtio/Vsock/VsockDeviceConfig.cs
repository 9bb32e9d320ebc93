using System.Text.Json;
using KvmPS.Devices.Config;
using KvmPS.Devices.Virtio;

namespace KvmPS.Devices.Virtio.Vsock;

/// <summary>
/// virtio-vsock with the host side as Unix sockets: <c>guest_cid</c> (≥ 3) and <c>uds_path</c>, where the VMM listens
/// for host → guest connections (<c>CONNECT port\n</c>); guest → host connections to port P go to <c>uds_path_P</c>.
/// </summary>
public sealed record VsockDeviceConfig : DeviceConfig
{
    public override string Type => "vsock";
    public required ulong GuestCid { get; init; }
    public required string UdsPath { get; init; }

    public static VsockDeviceConfig Parse(DeviceOptions options)
    {
        var config = new VsockDeviceConfig
        {
            GuestCid = (ulong)options.Int("guest_cid", -1, 3, uint.MaxValue - 1),
            UdsPath = options.RequiredString("uds_path"),
        };
        options.EnsureAllUsed();
        if (config.GuestCid == ulong.MaxValue) throw new DeviceConfigException($"{options.Source}: the vsock device needs 'guest_cid' (3 or more).");
        if (config.UdsPath.Length == 0) throw new DeviceConfigException($"{options.Source}: key 'uds_path': empty path.");
        return config;
    }

    /// <summary>A live upgrade's destination does not bind: the running VMM listens at <c>uds_path</c> and hands the socket over.</summary>
    public override IVirtioDevice CreateDevice(DeviceContext context) =>
        new VirtioVsock(context.Memory, GuestCid, UdsPath, context.Log, deferListener: context.Deferred.HasFlag(HandedOverResources.VsockListeners));

    public override void Describe(Utf8JsonWriter w)
    {
        w.WriteNumber("guest_cid", GuestCid);
        w.WriteString("uds_path", UdsPath);
    }
}
