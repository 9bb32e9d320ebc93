using System.Net.Sockets;
using System.Text.Json;
using KvmPS.Devices.Config;
using KvmPS.Devices.Pci;

namespace KvmPS.Devices.Passthrough;

/// <summary>
/// <c>--device vfio-user,socket=PATH</c>: a device served by a vfio-user server on a Unix socket (docs/devices.md,
/// "Passthrough"). The VMM connects at start-up and refuses to start when the server is missing or speaks another
/// version; guest RAM is put in memfds so the server can map it for DMA. A guest reboot keeps the connection and
/// resets the device over it.
/// </summary>
public sealed record VfioUserDeviceConfig : PciFunctionConfig
{
    public const string TypeName = "vfio-user";
    public override string Type => TypeName;
    public required string SocketPath { get; init; }
    /// <summary>How long one reply may take before the server counts as hung (the device then reads as all-ones).</summary>
    public int ReplyTimeoutMs { get; init; } = 5000;

    public static VfioUserDeviceConfig Parse(DeviceOptions options)
    {
        string socket = options.RequiredString("socket");
        options.EnsureAllUsed();
        if (socket.Length == 0) throw new DeviceConfigException($"{options.Source}: key 'socket': the path is empty.");
        return new VfioUserDeviceConfig { SocketPath = socket };
    }

    public override PciDevice CreateFunction(PciFunctionContext context)
    {
        var log = context.Device.Log;
        // A guest reboot's function takes the previous boot's connection, with the device reset over it.
        if (context.Device.Files?.TakeConnection<VfioUserClient>() is { } kept && PrepareKept(kept, log))
            return PassthroughDevice.Create(kept, context.Device.Memory, HostOf(context), log, alreadyReset: true);
        return PassthroughDevice.Create(Connect(context.Device.Files), context.Device.Memory, HostOf(context), log);
    }

    /// <summary>
    /// Readies a connection kept across a guest reboot (<see cref="VfioUserClient.PrepareForNextBoot"/>). When that
    /// fails (the server went away meanwhile) the connection is closed and false returned: the device connects again by
    /// path, as it did before connections were kept (which a jailed VMM may not be allowed to).
    /// </summary>
    private bool PrepareKept(VfioUserClient kept, Action<string> log)
    {
        try
        {
            kept.PrepareForNextBoot();
            return true;
        }
        catch (PassthroughException e)
        {
            kept.Dispose();
            log($"{kept.Name}: the connection kept across the reboot failed ({e.Message}); connecting again by path");
            return false;
        }
    }

    /// <summary>
    /// The connection: the socket management connected and passed with <c>device.add</c> (a jailed VMM may not reach
    /// the path; docs/vmm.md "Passing open files"), else a connection to <see cref="SocketPath"/>. A passed file must
    /// be one connected Unix stream socket; anything else is closed and refused naming the socket and what came.
    /// </summary>
    private VfioUserClient Connect(PassedFiles? passed)
    {
        if (passed is not { Count: > 0 }) return VfioUserClient.Connect(SocketPath, ReplyTimeoutMs);
        string name = $"vfio-user socket {SocketPath}";
        var files = passed.TakeAll();
        if (files.Count != 1)
        {
            foreach (var f in files) f.Dispose();
            throw new PassthroughException(name, $"{files.Count} files were passed for it; a vfio-user device takes one (its connected socket)");
        }
        var file = files[0];
        if (Interop.UnixStreamSockets.WhyNotConnected(file) is { } what)
        {
            file.Dispose();
            throw new PassthroughException(name, $"the file passed for it is {what}; a vfio-user device takes a connected Unix stream socket");
        }
        // The descriptor moves to a socket handle: the file handle lets go of it without closing it.
        var handle = new SafeSocketHandle(file.DangerousGetHandle(), ownsHandle: true);
        file.SetHandleAsInvalid();
        Socket socket;
        try { socket = new Socket(handle); }
        catch (SocketException e)
        {
            handle.Dispose();
            throw new PassthroughException(name, $"the passed socket cannot be used: {e.Message}", e);
        }
        return VfioUserClient.Attach(socket, name, ReplyTimeoutMs);
    }

    internal static PassthroughHost HostOf(PciFunctionContext context) => context.Passthrough ?? new PassthroughHost(null, null, null);

    public override void Describe(Utf8JsonWriter w) => w.WriteString("socket", SocketPath);
}

/// <summary>
/// <c>--device vfio,host=0000:03:00.0</c>: a host PCI function bound to vfio-pci, through kernel VFIO. Not run on real
/// hardware here (no IOMMU on the development hosts); docs/devices.md gives the steps to verify it.
/// </summary>
public sealed record VfioDeviceConfig : PciFunctionConfig
{
    public const string TypeName = "vfio";
    public override string Type => TypeName;
    public required string HostAddress { get; init; }

    public static VfioDeviceConfig Parse(DeviceOptions options)
    {
        string host = options.RequiredString("host").ToLowerInvariant();
        options.EnsureAllUsed();
        if (host.Length == 7 && KernelVfioTransport.IsHostAddress("0000:" + host)) host = "0000:" + host; // 03:00.0: domain 0
        if (!KernelVfioTransport.IsHostAddress(host)) throw new DeviceConfigException($"{options.Source}: key 'host': '{host}' is not a PCI address like 0000:03:00.0.");
        return new VfioDeviceConfig { HostAddress = host };
    }

    public override PciDevice CreateFunction(PciFunctionContext context) =>
        PassthroughDevice.Create(KernelVfioTransport.Open(HostAddress), context.Device.Memory, VfioUserDeviceConfig.HostOf(context), context.Device.Log);

    public override void Describe(Utf8JsonWriter w) => w.WriteString("host", HostAddress);
}
