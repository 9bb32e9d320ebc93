using System.Text.Json;
using System.Text.Json.Serialization;

namespace KvmPS.Contract;

/// <summary>
/// One reply line: <c>{"id": same, "ok": true, "result": {...}}</c> or <c>{"id": same, "ok": false, "error": {...}}</c>.
/// <see cref="Result"/> is the request's reply record (<see cref="ContractJson.ReadResult{T}"/> reads it).
/// Reply records accept fields they do not know, so a newer VMM can add some.
/// </summary>
public sealed record ControlReply
{
    [JsonPropertyOrder(-1)]
    public JsonElement? Id { get; init; }
    public required bool Ok { get; init; }
    public JsonElement? Result { get; init; }
    public ControlError? Error { get; init; }
}

/// <summary>Why a request failed: <see cref="Code"/> is one of <see cref="ControlErrorCodes"/>.</summary>
public sealed record ControlError(string Code, string Message);

/// <summary>The <c>code</c> of an error reply.</summary>
public static class ControlErrorCodes
{
    /// <summary>Not JSON, not an object, no <c>request</c>, longer than <see cref="ControlRequests.MaxRequestBytes"/>.</summary>
    public const string MalformedRequest = "MalformedRequest";
    public const string UnknownRequest = "UnknownRequest";
    /// <summary>An argument is missing, unknown, of the wrong type or out of range; the message names it.</summary>
    public const string InvalidArgument = "InvalidArgument";
    /// <summary>Not allowed in the VM's current state (see each request record).</summary>
    public const string InvalidState = "InvalidState";
    public const string Timeout = "Timeout";
    public const string InternalError = "InternalError";
    /// <summary>Every connection slot is carrying out a request or attached to the console; the connection is closed after this reply.</summary>
    public const string Busy = "Busy";
    /// <summary>The connecting user is neither root nor the VMM's own (SO_PEERCRED); the connection is closed after this reply.</summary>
    public const string PermissionDenied = "PermissionDenied";
}

/// <summary>A request that cannot be carried out; becomes an error reply with <see cref="Code"/> (a <see cref="ControlErrorCodes"/> value).</summary>
public sealed class ControlProtocolException(string code, string message) : Exception(message)
{
    public string Code { get; } = code;
}

/// <summary>The VM states <c>status.state</c> reports.</summary>
public static class VmStateNames
{
    public const string Created = "Created";
    public const string Running = "Running";
    public const string Paused = "Paused";
    public const string Stopped = "Stopped";
    public const string Crashed = "Crashed";
    /// <summary>Live-migrated away: the VM runs in another VMM (the process exits).</summary>
    public const string Migrated = "Migrated";
}

/// <summary>Reply to <see cref="PingRequest"/>.</summary>
public sealed record PingReply(string Pong);

/// <summary>Reply to <see cref="ConsoleAttachRequest"/>; the raw console stream follows.</summary>
public sealed record ConsoleAttachReply(bool Attached);

/// <summary>Reply to <see cref="DescribeRequest"/>: the configuration the VMM is actually running with.</summary>
public sealed record DescribeReply
{
    public required string Vmm { get; init; }
    public required string Version { get; init; }
    public int Pid { get; init; }
    /// <summary>The kernel path, or the built-in guest's display name.</summary>
    public string? Kernel { get; init; }
    public string? Initrd { get; init; }
    public string? Cmdline { get; init; }
    public long MemoryBytes { get; init; }
    /// <summary>vCPUs the configuration boots with.</summary>
    public int Vcpus { get; init; }
    /// <summary>The hot-plug maximum (<c>vcpu.set</c> can go up to it).</summary>
    public int MaxVcpus { get; init; }
    /// <summary>vCPUs present now: booted plus hot-added minus those the guest ejected (null while no VM exists).</summary>
    public int? PresentVcpus { get; init; }
    public HugePageBacking Hugepages { get; init; }
    public bool Ksm { get; init; }
    public int? NumaNode { get; init; }
    public IReadOnlyList<DeviceDescription> Devices { get; set; } = [];
    /// <summary><c>stdio</c>, <c>none</c> or <c>file:PATH</c>.</summary>
    public string? Serial { get; init; }
    public string? ControlSocket { get; init; }
    public GuestResetAction OnReset { get; init; }
    public GuestCrashAction OnCrash { get; init; }
    public bool NestedPvm { get; init; }
    /// <summary>The requests this VMM answers: <see cref="ControlRequests.Core"/> and its devices' requests.</summary>
    public IReadOnlyList<string> Requests { get; set; } = [];
    /// <summary>
    /// The requests that take open files with them (<c>passed_files</c>, docs/vmm.md "Passing open files"):
    /// <see cref="ControlRequests.TakingPassedFiles"/>. Null from a VMM from before this list.
    /// </summary>
    public IReadOnlyList<string>? PassedFilesRequests { get; set; }
}

/// <summary>One device of <see cref="DescribeReply.Devices"/>: its type, PCI address and options (the device's own keys).</summary>
public sealed record DeviceDescription
{
    public string Type { get; set; } = "";
    /// <summary>bus:slot.function, e.g. <c>00:01.0</c>.</summary>
    public string Pci { get; set; } = "";
    /// <summary>True for a device added by <c>device.add</c>, false for one the VMM was configured with.</summary>
    public bool? Hotplugged { get; set; }
    /// <summary>
    /// True when <c>device.remove</c> can take the device from the running VM: every hot-plugged one, and a configured
    /// virtio-net device or virtio-blk disk other than the first. Null from a VMM before live removal of configured
    /// devices (then only hot-plugged devices can be removed).
    /// </summary>
    public bool? Removable { get; set; }
    [JsonExtensionData]
    public Dictionary<string, JsonElement>? Options { get; set; }
}

/// <summary>Reply to <see cref="StatusRequest"/>, <see cref="PauseRequest"/> and <see cref="ResumeRequest"/>.</summary>
public sealed record StatusReply
{
    /// <summary>One of <see cref="VmStateNames"/>.</summary>
    public required string State { get; init; }
    public int Boots { get; init; }
    public long UptimeMs { get; init; }
    public bool NestedPvm { get; init; }
    /// <summary>The guest handles ACPI power-button requests, so a graceful stop can work.</summary>
    public bool? AcpiPowerButton { get; init; }
    public IReadOnlyList<VcpuStateReply> Vcpus { get; set; } = [];
    /// <summary>How the VM ended; present once it has.</summary>
    public ExitReply? Exit { get; init; }
}

public sealed record VcpuStateReply(int Id, string State);

/// <summary>
/// Reply to <see cref="VcpuSetRequest"/>: the vCPUs present now (a vCPU being removed counts until the guest ejects it),
/// the maximum, the CPUs whose insert event the guest has not taken yet and those it has not ejected yet, and whether
/// the request's <c>timeout_ms</c> passed with something still pending.
/// </summary>
public sealed record VcpuSetReply(int Vcpus, int MaxVcpus)
{
    public IReadOnlyList<int> Inserting { get; init; } = [];
    public IReadOnlyList<int> Removing { get; init; } = [];
    public bool TimedOut { get; init; }
}

/// <summary>
/// Reply to <see cref="DeviceAddRequest"/>: the device as <c>describe</c> lists it, and whether the guest driver has
/// enabled it (DRIVER_OK) by the time of the reply; <see cref="TimedOut"/> when the request's <c>timeout_ms</c> passed first.
/// </summary>
public sealed record DeviceAddReply
{
    public required DeviceDescription Device { get; init; }
    public bool DriverReady { get; init; }
    public bool TimedOut { get; init; }
}

/// <summary>
/// Reply to <see cref="DeviceRemoveRequest"/>: <see cref="State"/> is <c>removed</c> once the guest ejected the device
/// and the VMM released it (image closed, tap closed), <c>removing</c> while the eject request is pending.
/// </summary>
public sealed record DeviceRemoveReply
{
    public required string Pci { get; init; }
    public required string State { get; init; }
    public bool TimedOut { get; init; }

    public const string Removed = "removed";
    public const string Removing = "removing";
}

/// <summary>How the VM ended.</summary>
public sealed record ExitReply
{
    /// <summary><c>PowerOff</c>, <c>Reset</c>, <c>DebugExit</c>, <c>Stopped</c> or <c>Crashed</c>.</summary>
    public required string Kind { get; init; }
    public string? Reason { get; init; }
    public int? DebugExitValue { get; init; }
    /// <summary>On a crash: the failing vCPU's registers.</summary>
    public CrashRegisters? Registers { get; init; }
}

/// <summary>The failing vCPU's registers on a crash, as hex strings (<c>0x…</c>).</summary>
public sealed record CrashRegisters
{
    public int Vcpu { get; init; }
    public string? Rip { get; init; }
    public string? Rsp { get; init; }
    public string? Rflags { get; init; }
    public string? Rax { get; init; }
    public string? Rbx { get; init; }
    public string? Rcx { get; init; }
    public string? Rdx { get; init; }
    public string? Rsi { get; init; }
    public string? Rdi { get; init; }
    public string? Rbp { get; init; }
    public string? Cr0 { get; init; }
    public string? Cr2 { get; init; }
    public string? Cr3 { get; init; }
    public string? Cr4 { get; init; }
    public string? Efer { get; init; }
    public string? Cs { get; init; }
    public string? CsBase { get; init; }

    /// <summary>The registers by their wire names, in wire order.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> ByName()
    {
        var all = new (string Name, string? Value)[]
        {
            ("rip", Rip), ("rsp", Rsp), ("rflags", Rflags), ("rax", Rax), ("rbx", Rbx), ("rcx", Rcx), ("rdx", Rdx), ("rsi", Rsi),
            ("rdi", Rdi), ("rbp", Rbp), ("cr0", Cr0), ("cr2", Cr2), ("cr3", Cr3), ("cr4", Cr4), ("efer", Efer), ("cs", Cs), ("cs_base", CsBase),
        };
        var list = new List<KeyValuePair<string, string>> { new("vcpu", Vcpu.ToString(System.Globalization.CultureInfo.InvariantCulture)) };
        foreach (var (name, value) in all)
            if (value is not null) list.Add(new(name, value));
        return list;
    }
}

/// <summary>Reply to <see cref="MetricsRequest"/>.</summary>
public sealed record MetricsReply
{
    /// <summary>KVM exits by reason name (<c>io</c>, <c>mmio</c>, <c>hlt</c>, …); reasons never seen are left out.</summary>
    public IReadOnlyDictionary<string, long> Exits { get; set; } = new Dictionary<string, long>();
    public IReadOnlyList<VcpuMetricsReply> Vcpus { get; set; } = [];
    public long RssBytes { get; init; }
    public long GuestRssBytes { get; init; }
    public long VmmRssBytes { get; init; }
    public long ConsoleBytes { get; init; }
    public long PostCodeWrites { get; init; }
    public long UptimeMs { get; init; }
    public long SinceExecMs { get; init; }
    public bool NestedPvm { get; init; }
}

public sealed record VcpuMetricsReply(int Id, string State, long IoExits, long MmioExits);

/// <summary>Reply to <see cref="StopRequest"/>. The VMM process exits right after sending it.</summary>
public sealed record StopReply
{
    /// <summary>The guest did not power off by itself (in time); the VM was stopped by force.</summary>
    public bool Forced { get; init; }
    /// <summary>The ACPI power button was pressed.</summary>
    public bool PowerButton { get; init; }
    /// <summary>Why it ended so: one of <see cref="StopOutcomes"/>.</summary>
    public string? Outcome { get; init; }
    /// <summary>How long the guest was waited for after the press (0 if not pressed).</summary>
    public long WaitedMs { get; init; }
    /// <summary>The VM state when stopping finished.</summary>
    public required string State { get; init; }
}

/// <summary>The <c>outcome</c> of a <see cref="StopReply"/>.</summary>
public static class StopOutcomes
{
    /// <summary>The guest powered off after the ACPI power button was pressed.</summary>
    public const string PoweredOff = "PoweredOff";
    /// <summary>The power button was pressed but the guest did not power off within <c>timeout_ms</c>; stopped by force.</summary>
    public const string TimedOut = "TimedOut";
    /// <summary>The guest has not enabled ACPI power-button events (no ACPI OS); not pressed, stopped by force at once.</summary>
    public const string NoAcpi = "NoAcpi";
    /// <summary>The VM was paused, so the guest could not act on a button; stopped by force at once.</summary>
    public const string Paused = "Paused";
    /// <summary><c>graceful: false</c>: stopped by force as asked.</summary>
    public const string Forced = "Forced";
    /// <summary>The guest was not running (never started, between boots, already ended).</summary>
    public const string NotRunning = "NotRunning";
}

/// <summary>Reply to <see cref="SnapshotCreateRequest"/>.</summary>
public sealed record SnapshotCreateReply
{
    public required string Path { get; init; }
    public SnapshotMemory Memory { get; init; }
    /// <summary>Bytes of guest memory written to memory.bin (data, not holes).</summary>
    public long MemoryBytes { get; init; }
    /// <summary>Size of state.bin.</summary>
    public long StateBytes { get; init; }
    public long DurationMs { get; init; }
    /// <summary>How long the vCPUs and devices were paused.</summary>
    public long PausedMs { get; init; }
    public IReadOnlyList<DiskSnapshotReply> DiskSnapshots { get; set; } = [];
    /// <summary><c>Running</c> or <c>Paused</c> (see <see cref="VmStateNames"/>).</summary>
    public required string VmState { get; init; }
}

/// <summary>The internal qcow2 snapshot a <see cref="SnapshotCreateRequest"/> took of one disk.</summary>
public sealed record DiskSnapshotReply(string Path, string SnapshotId);

/// <summary>Reply to <see cref="BalloonSetRequest"/> and <see cref="BalloonGetRequest"/>.</summary>
public sealed record BalloonStateReply
{
    public long TargetBytes { get; init; }
    public long ActualBytes { get; init; }
    public long MemoryBytes { get; init; }
    public bool DriverOk { get; init; }
    public bool DeflateOnOom { get; init; }
    public int StatsIntervalS { get; init; }
    /// <summary>The guest's statistics by name (bytes or counts, as the virtio spec defines each).</summary>
    public IReadOnlyDictionary<string, long> Stats { get; set; } = new Dictionary<string, long>();
    /// <summary>Age of <see cref="Stats"/>; null before the driver first sent any.</summary>
    public long? StatsUpdatedMsAgo { get; init; }
    public long InflatedPages { get; init; }
    public long DeflatedPages { get; init; }
    /// <summary>Page numbers from the guest outside its memory, ignored.</summary>
    public long InvalidPfns { get; init; }
    public long DiscardedBytes { get; init; }
}

/// <summary>
/// Reply to <see cref="MemorySetRequest"/> and <see cref="MemoryGetRequest"/> (virtio-mem). Totals count the boot memory:
/// <c>requested_bytes</c> is what memory.set asked for, <c>current_bytes</c> = startup + <c>plugged_bytes</c> (the
/// blocks the guest has plugged so far; it follows the request in its own time).
/// </summary>
public sealed record MemoryStateReply
{
    public long StartupBytes { get; init; }
    public long MaximumBytes { get; init; }
    public long RequestedBytes { get; init; }
    public long PluggedBytes { get; init; }
    public long CurrentBytes { get; init; }
    public long BlockSizeBytes { get; init; }
    /// <summary>Guest-physical address where the hot-plug region starts.</summary>
    public long RegionStartBytes { get; init; }
    public bool DriverOk { get; init; }
    /// <summary>Guest requests the device refused as malformed or out of range (VIRTIO_MEM_RESP_ERROR).</summary>
    public long ErrorResponses { get; init; }
}

/// <summary>Reply to <see cref="NetStatsRequest"/>.</summary>
public sealed record NetStatsReply
{
    public required string Tap { get; init; }
    public string? Mac { get; init; }
    public long RxPackets { get; init; }
    public long RxBytes { get; init; }
    public long RxDropped { get; init; }
    public long RxStalls { get; init; }
    public long TxPackets { get; init; }
    public long TxBytes { get; init; }
    public long TxDropped { get; init; }
}

/// <summary>Reply to <see cref="MediaChangeRequest"/>: the drive after the change.</summary>
public sealed record MediaStateReply
{
    public required string Pci { get; init; }
    /// <summary>The inserted image; null: no medium.</summary>
    public string? Path { get; init; }
    public long SizeBytes { get; init; }
    /// <summary>The guest holds the tray locked (PREVENT ALLOW MEDIUM REMOVAL).</summary>
    public bool Locked { get; init; }
}

/// <summary>Reply to <see cref="DisplayGetRequest"/>.</summary>
public sealed record DisplayStateReply
{
    public required string Pci { get; init; }
    /// <summary>The guest has enabled a graphics mode (DISPI enable); false while only the firmware's text is shown.</summary>
    public bool Enabled { get; init; }
    public int WidthPixels { get; init; }
    public int HeightPixels { get; init; }
    public int BitsPerPixel { get; init; }
    public string? VncUnixPath { get; init; }
    /// <summary>ADDR:PORT of the TCP listener, null without one.</summary>
    public string? VncTcp { get; init; }
    public bool VncPasswordRequired { get; init; }
    public int VncClients { get; init; }
}
