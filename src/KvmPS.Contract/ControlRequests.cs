using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;

namespace KvmPS.Contract;

/// <summary>
/// A control-socket request (docs/vmm.md, "Control protocol"): one JSON object on one line,
/// <c>{"id": any, "request": NAME, ...arguments}</c>. One record per action; each says when it is allowed.
/// Unknown arguments are rejected (<see cref="ControlErrorCodes.InvalidArgument"/>, naming the field).
/// </summary>
public abstract record ControlRequest
{
    protected ControlRequest(string request) => Request = request;

    /// <summary>Optional; echoed in the reply as given.</summary>
    [JsonPropertyOrder(-2)]
    public JsonElement? Id { get; init; }

    /// <summary>The request name (one of <see cref="ControlRequests.Names"/>).</summary>
    [JsonPropertyOrder(-1)]
    public string Request { get; set; }
}

/// <summary>Any state: liveness check. Reply: <see cref="PingReply"/>.</summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record PingRequest() : ControlRequest(Name) { public const string Name = "ping"; }

/// <summary>Any state: the configuration the VMM runs with, process and host facts. Reply: <see cref="DescribeReply"/>.</summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record DescribeRequest() : ControlRequest(Name) { public const string Name = "describe"; }

/// <summary>Any state: VM state, uptime, vCPU states, and how the VM ended. Reply: <see cref="StatusReply"/>.</summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record StatusRequest() : ControlRequest(Name) { public const string Name = "status"; }

/// <summary>Any state: exit counts by reason, vCPU states, process RSS. Reply: <see cref="MetricsReply"/>.</summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record MetricsRequest() : ControlRequest(Name) { public const string Name = "metrics"; }

/// <summary>Running (Paused: no-op). Returns once every vCPU is parked. Reply: <see cref="StatusReply"/>.</summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record PauseRequest() : ControlRequest(Name) { public const string Name = "pause"; }

/// <summary>Paused (Running: no-op). Reply: <see cref="StatusReply"/>.</summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record ResumeRequest() : ControlRequest(Name) { public const string Name = "resume"; }

/// <summary>
/// Any state. <see cref="Graceful"/> presses the ACPI power button and waits <see cref="TimeoutMs"/> for the guest to
/// power off, then stops it by force. The process exits after replying. Reply: <see cref="StopReply"/>.
/// </summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record StopRequest() : ControlRequest(Name)
{
    public const string Name = "stop";
    public bool Graceful { get; set; } = true;
    /// <summary>How long a graceful stop waits for power-off (not negative).</summary>
    public int TimeoutMs { get; set; } = 10_000;
}

/// <summary>
/// Running or Paused. After the reply (<see cref="ConsoleAttachReply"/>) the connection is a raw byte stream both ways
/// with the guest console; <see cref="Replay"/> first sends the last 64 KiB of output.
/// </summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record ConsoleAttachRequest() : ControlRequest(Name)
{
    public const string Name = "console.attach";
    public bool Replay { get; set; } = true;
}

/// <summary>
/// Running or Paused. Pauses every vCPU and device, writes the snapshot directory <see cref="Path"/> (which must not
/// exist yet or be empty), and resumes unless <see cref="Resume"/> is false. With <see cref="Disks"/> =
/// <see cref="SnapshotDisks.Snapshot"/> every qcow2 disk gets an internal snapshot named <see cref="SnapshotId"/>
/// (default: the directory's name) at the same paused instant; a raw disk fails the request
/// (<see cref="ControlErrorCodes.InvalidState"/>, naming the disk) unless <see cref="SnapshotDisks.Ignore"/>.
/// Reply: <see cref="SnapshotCreateReply"/>.
/// </summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record SnapshotCreateRequest() : ControlRequest(Name)
{
    public const string Name = "snapshot.create";
    public required string Path { get; init; }
    public SnapshotMemory Memory { get; set; } = SnapshotMemory.Full;
    public bool Resume { get; set; } = true;
    public SnapshotDisks Disks { get; set; } = SnapshotDisks.Snapshot;
    public string? SnapshotId { get; init; }
}

/// <summary>Which guest memory a snapshot writes.</summary>
[JsonConverter(typeof(SnakeCaseEnumConverter<SnapshotMemory>))]
public enum SnapshotMemory
{
    /// <summary>All of guest RAM.</summary>
    Full,
    /// <summary>Only pages written since the previous snapshot; the directory names its parent.</summary>
    Diff,
}

/// <summary>What a snapshot does with the VM's disks.</summary>
[JsonConverter(typeof(SnakeCaseEnumConverter<SnapshotDisks>))]
public enum SnapshotDisks
{
    /// <summary>An internal qcow2 snapshot per disk; raw disks make the request fail.</summary>
    Snapshot,
    /// <summary>Disks are left alone and move on after the snapshot.</summary>
    Ignore,
}

/// <summary>Running or Paused, with a balloon device: set the balloon size. Reply: <see cref="BalloonStateReply"/>.</summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record BalloonSetRequest() : ControlRequest(Name)
{
    public const string Name = "balloon.set";
    /// <summary>Memory to take from the guest (0: an empty balloon).</summary>
    public required long TargetBytes { get; init; }
}

/// <summary>With a balloon device, any state the machine exists in: balloon size and the guest's statistics. Reply: <see cref="BalloonStateReply"/>.</summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record BalloonGetRequest() : ControlRequest(Name) { public const string Name = "balloon.get"; }

/// <summary>
/// Running or Paused, with memory_maximum_bytes above memory_bytes (a virtio-mem device): the guest's total memory
/// should become <c>bytes</c>, from memory_bytes to memory_maximum_bytes in whole blocks. Returns once the device has
/// told the driver; the guest plugs or unplugs in its own time. Reply: <see cref="MemoryStateReply"/>.
/// </summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record MemorySetRequest() : ControlRequest(Name)
{
    public const string Name = "memory.set";
    /// <summary>Total guest memory wanted (boot memory included).</summary>
    public required long Bytes { get; init; }
}

/// <summary>With a virtio-mem device, any state the machine exists in: the sizes. Reply: <see cref="MemoryStateReply"/>.</summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record MemoryGetRequest() : ControlRequest(Name) { public const string Name = "memory.get"; }

/// <summary>With a net device, any state the machine exists in: packet counters. Reply: <see cref="NetStatsReply"/>.</summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record NetStatsRequest() : ControlRequest(Name) { public const string Name = "net.stats"; }

/// <summary>
/// Running or Paused: hot-add vCPUs up to <c>max_vcpus</c>, or ask the guest to release the highest ones (ACPI CPU
/// hot-plug, docs/acpi.md). Without <c>timeout_ms</c> it returns once the event is raised and the guest onlines or ejects
/// in its own time; with it, it waits up to that long for the guest to take every insert event and eject every CPU it
/// was asked to remove, and reports what is still pending (a CPU the guest does not eject stays present and running:
/// nothing is torn down under the guest). Reply: <see cref="VcpuSetReply"/>.
/// </summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record VcpuSetRequest() : ControlRequest(Name)
{
    public const string Name = "vcpu.set";
    /// <summary>vCPUs the guest should have: 1 to max_vcpus.</summary>
    public required int Count { get; init; }
    /// <summary>How long to wait for the guest to act on the events (0 to 600000; absent or 0: do not wait).</summary>
    public int? TimeoutMs { get; init; }
}

/// <summary>
/// Running or Paused: hot-plug a virtio-blk or virtio-net device (ACPI PCI hot-plug, docs/acpi.md) into the free slot
/// <see cref="Pci"/> (default: the lowest free one) and raise the insert event. Only <see cref="BlockDeviceSpec"/> and
/// <see cref="NetDeviceSpec"/> can be hot-plugged. The device exists (and <c>describe</c> lists it) when the reply comes;
/// with <see cref="TimeoutMs"/> the reply waits up to that long for the guest to enable it (its driver sets DRIVER_OK).
/// A bad spec or backend (missing image, tap that cannot be opened) fails the request and leaves the machine unchanged.
/// Reply: <see cref="DeviceAddReply"/>.
/// </summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record DeviceAddRequest() : ControlRequest(Name)
{
    public const string Name = "device.add";
    public required DeviceSpec Device { get; init; }
    /// <summary>bus:slot.function (function 0 of a free slot on bus 0, e.g. <c>00:07.0</c>); absent: the lowest free slot.</summary>
    public string? Pci { get; init; }
    /// <summary>How long to wait for the guest driver (0 to 600000; absent or 0: do not wait).</summary>
    public int? TimeoutMs { get; init; }
    /// <summary>
    /// How many open files came with this request line (SCM_RIGHTS, 1 to 16; absent or 0: none), which the device uses
    /// instead of opening its path: for block the image, then each backing file in chain order; for net the tap, opened
    /// by the sender (TUNSETIFF) and set up (up, MTU, bridge); for vfio-user the socket, connected by the sender to the
    /// server at its path. The count must match what came; docs/vmm.md "Passing open files".
    /// </summary>
    public int? PassedFiles { get; init; }
}

/// <summary>
/// Running or Paused: ask the guest to release the hot-pluggable device at <see cref="Pci"/> (eject request through
/// ACPI); the VMM tears the device down only when the guest ejects it (its <c>_EJ0</c>). With <see cref="TimeoutMs"/>
/// the reply waits up to that long; a device the guest has not ejected stays present and working (state
/// <c>removing</c>, <c>timed_out</c> true): nothing is torn down under the guest. Reply: <see cref="DeviceRemoveReply"/>.
/// </summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record DeviceRemoveRequest() : ControlRequest(Name)
{
    public const string Name = "device.remove";
    /// <summary>bus:slot.function of the device, as <c>describe</c> lists it.</summary>
    public required string Pci { get; init; }
    /// <summary>How long to wait for the guest to eject (0 to 600000; absent or 0: do not wait).</summary>
    public int? TimeoutMs { get; init; }
}

/// <summary>
/// Any state: insert (<see cref="Path"/>) or eject (no path) the medium of the CD/DVD drive at <see cref="Pci"/>. The
/// guest sees a unit attention and a media event (GET EVENT STATUS NOTIFICATION). A tray the guest has locked
/// (PREVENT ALLOW MEDIUM REMOVAL) is refused with InvalidState unless <see cref="Force"/>. A missing, unreadable or
/// non-ISO 9660 file (or a passed file that is not a regular file open read-only) is refused naming it, and the old
/// medium stays. Reply: <see cref="MediaStateReply"/>.
/// </summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record MediaChangeRequest() : ControlRequest(Name)
{
    public const string Name = "media.change";
    /// <summary>bus:slot.function of a cdrom device, as <c>describe</c> lists it.</summary>
    public required string Pci { get; init; }
    /// <summary>The ISO image to insert (what <c>describe</c> and the reply report); absent: eject.</summary>
    public string? Path { get; init; }
    public bool? Force { get; init; }
    /// <summary>
    /// 1: the ISO came open with this request line (SCM_RIGHTS; a regular file opened read-only by the sender) and is
    /// used instead of opening <see cref="Path"/>, which a jailed VMM may not see; absent or 0: opened by path. Only
    /// with a path; docs/vmm.md "Passing open files".
    /// </summary>
    public int? PassedFiles { get; init; }
}

/// <summary>With a display device: its mode and the VNC server's listeners and viewers. Reply: <see cref="DisplayStateReply"/>.</summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record DisplayGetRequest() : ControlRequest(Name) { public const string Name = "display.get"; }

/// <summary>Every request name and its record.</summary>
public static class ControlRequests
{
    /// <summary>Requests the VMM itself handles (device requests are listed by <c>describe</c> when the device exists).</summary>
    public static IReadOnlyList<string> Core { get; } =
    [
        DescribeRequest.Name, StatusRequest.Name, MetricsRequest.Name, PauseRequest.Name, ResumeRequest.Name, StopRequest.Name,
        ConsoleAttachRequest.Name, PingRequest.Name, SnapshotCreateRequest.Name, VcpuSetRequest.Name,
        DeviceAddRequest.Name, DeviceRemoveRequest.Name,
        MigrateRequest.Name, MigrateStatusRequest.Name, MigrateCancelRequest.Name,
    ];

    /// <summary>Requests a device handles.</summary>
    public static IReadOnlyList<string> Device { get; } = [BalloonSetRequest.Name, BalloonGetRequest.Name, NetStatsRequest.Name, MemorySetRequest.Name, MemoryGetRequest.Name, MediaChangeRequest.Name, DisplayGetRequest.Name];

    public static IReadOnlyList<string> Names { get; } = [.. Core, .. Device];

    /// <summary>The requests that take open files with them (<c>passed_files</c>; docs/vmm.md "Passing open files").</summary>
    public static IReadOnlyList<string> TakingPassedFiles { get; } = [DeviceAddRequest.Name, MediaChangeRequest.Name, MigrateRequest.Name];

    /// <summary>The record of each request name.</summary>
    public static IReadOnlyDictionary<string, JsonTypeInfo> Records { get; } = new Dictionary<string, JsonTypeInfo>(StringComparer.Ordinal)
    {
        [PingRequest.Name] = ContractJsonContext.Default.PingRequest,
        [DescribeRequest.Name] = ContractJsonContext.Default.DescribeRequest,
        [StatusRequest.Name] = ContractJsonContext.Default.StatusRequest,
        [MetricsRequest.Name] = ContractJsonContext.Default.MetricsRequest,
        [PauseRequest.Name] = ContractJsonContext.Default.PauseRequest,
        [ResumeRequest.Name] = ContractJsonContext.Default.ResumeRequest,
        [StopRequest.Name] = ContractJsonContext.Default.StopRequest,
        [ConsoleAttachRequest.Name] = ContractJsonContext.Default.ConsoleAttachRequest,
        [SnapshotCreateRequest.Name] = ContractJsonContext.Default.SnapshotCreateRequest,
        [VcpuSetRequest.Name] = ContractJsonContext.Default.VcpuSetRequest,
        [DeviceAddRequest.Name] = ContractJsonContext.Default.DeviceAddRequest,
        [DeviceRemoveRequest.Name] = ContractJsonContext.Default.DeviceRemoveRequest,
        [MigrateRequest.Name] = ContractJsonContext.Default.MigrateRequest,
        [MigrateStatusRequest.Name] = ContractJsonContext.Default.MigrateStatusRequest,
        [MigrateCancelRequest.Name] = ContractJsonContext.Default.MigrateCancelRequest,
        [BalloonSetRequest.Name] = ContractJsonContext.Default.BalloonSetRequest,
        [BalloonGetRequest.Name] = ContractJsonContext.Default.BalloonGetRequest,
        [NetStatsRequest.Name] = ContractJsonContext.Default.NetStatsRequest,
        [MemorySetRequest.Name] = ContractJsonContext.Default.MemorySetRequest,
        [MemoryGetRequest.Name] = ContractJsonContext.Default.MemoryGetRequest,
        [MediaChangeRequest.Name] = ContractJsonContext.Default.MediaChangeRequest,
        [DisplayGetRequest.Name] = ContractJsonContext.Default.DisplayGetRequest,
    };

    /// <summary>Longest request line the VMM accepts.</summary>
    public const int MaxRequestBytes = 64 * 1024;

    /// <summary>
    /// Reads one request object into its record. Throws <see cref="ControlProtocolException"/>:
    /// <see cref="ControlErrorCodes.MalformedRequest"/> (not an object, no <c>request</c> string),
    /// <see cref="ControlErrorCodes.UnknownRequest"/>, or <see cref="ControlErrorCodes.InvalidArgument"/> naming the field.
    /// </summary>
    public static ControlRequest Parse(JsonElement request)
    {
        if (request.ValueKind != JsonValueKind.Object)
            throw new ControlProtocolException(ControlErrorCodes.MalformedRequest, "a request must be a JSON object");
        if (!request.TryGetProperty("request", out var nameElement) || nameElement.ValueKind != JsonValueKind.String)
            throw new ControlProtocolException(ControlErrorCodes.MalformedRequest, "the request has no \"request\" string naming what to do");
        string name = nameElement.GetString()!;
        if (!Records.TryGetValue(name, out var typeInfo))
            throw new ControlProtocolException(ControlErrorCodes.UnknownRequest, $"unknown request '{name}' (known: {string.Join(", ", Names)})");
        try
        {
            ContractValidator.CheckObject(request, typeInfo, "");
            return (ControlRequest)request.Deserialize(typeInfo)!;
        }
        catch (ContractException e)
        {
            throw new ControlProtocolException(ControlErrorCodes.InvalidArgument, $"{name}: {e.Message}");
        }
        catch (JsonException e)
        {
            throw new ControlProtocolException(ControlErrorCodes.InvalidArgument, $"{name}: {ContractJson.Explain(e)}");
        }
    }

    /// <summary>The request as one line of JSON (without the newline).</summary>
    public static byte[] Serialize(ControlRequest request)
    {
        if (!Records.TryGetValue(request.Request, out var typeInfo) || typeInfo.Type != request.GetType())
            throw new ArgumentException($"request '{request.Request}' does not match its record {request.GetType().Name}", nameof(request));
        return JsonSerializer.SerializeToUtf8Bytes(request, typeInfo);
    }
}
