using System.Collections.Concurrent;
using System.Text.Json;
using KvmPS.Contract;
using KvmPS.Vmm;

namespace KvmPS.Management.Tests.TestSupport;

/// <summary>
/// A VMM without a VM: the engine's own <see cref="ControlServer"/> (so the wire, its dispatch and its error replies are
/// the real ones) on a VM's control socket in the store, answering as a running VM does. Management's probe sees it as
/// Running. Its device list starts with the devices given and follows <c>device.add</c> / <c>device.remove</c>, which can
/// be made to behave like an older VMM (<see cref="Hotplug"/>), a refusing one (<see cref="RefuseAdd"/>) or a guest
/// that never ejects (<see cref="GuestEjects"/>).
/// </summary>
public sealed class FakeVmm : IVmmControl, IDisposable
{
    private readonly ControlServer _server;
    private readonly object _lock = new();
    private readonly List<DeviceDescription> _devices = new();
    private readonly HashSet<string> _ejectRequested = new();

    public FakeVmm(string socketPath, IEnumerable<DeviceSpec>? bootDevices = null, bool removesConfiguredDevices = true)
    {
        Console = new ConsoleHub(_ => { });
        RemovesConfiguredDevices = removesConfiguredDevices;
        var firstDisk = true;
        foreach (var spec in bootDevices ?? [])
        {
            // As kvmps-vmm (Vm/ConfiguredDeviceSlots): configured adapters and disks but the first can leave a running VM.
            var removable = spec is NetDeviceSpec || (spec is BlockDeviceSpec && !firstDisk);
            firstDisk &= spec is not BlockDeviceSpec;
            _devices.Add(Describe(spec, NextFreePci(), hotplugged: false, removable));
        }
        _server = ControlServer.Bind(socketPath, this);
    }

    /// <summary>How this VMM answers the hot-plug requests.</summary>
    public HotplugSupport Hotplug { get; set; } = HotplugSupport.Answers;

    /// <summary>
    /// True (default): as a VMM with live removal of configured devices, describe marks each device <c>removable</c>
    /// and device.remove takes configured adapters and disks but the first. False (constructor argument): an older VMM
    /// without the mark, which removes only hot-plugged devices.
    /// </summary>
    public bool RemovesConfiguredDevices { get; }

    /// <summary>When set, <c>device.add</c> fails with InvalidArgument and this message (as a VMM that cannot open an image).</summary>
    public string? RefuseAdd { get; set; }

    /// <summary>Which devices <see cref="RefuseAdd"/> applies to (null: all).</summary>
    public Func<DeviceSpec, bool>? RefuseAddWhen { get; set; }

    /// <summary>
    /// Whether the guest ejects the device at a PCI address. False: <c>device.remove</c> replies <c>removing</c>, timed
    /// out, and the device stays (as a guest that ignores the eject request).
    /// </summary>
    public Func<string, bool> GuestEjects { get; set; } = _ => true;

    /// <summary>Every request received, in order.</summary>
    public ConcurrentQueue<object> Requests { get; } = new();

    /// <summary>
    /// True: <c>device.add</c> takes passed files (as kvmps-vmm does) and records what each was in
    /// <see cref="PassedFiles"/>, then closes it. False (default): it answers as a VMM from before passed files, so
    /// management falls back to the path.
    /// </summary>
    public bool TakesPassedFiles { get; set; }

    /// <summary>What a <c>device.add</c> with files is refused with when <see cref="TakesPassedFiles"/> is false (null: a VMM from before passed files).</summary>
    public string? PassedFilesRefusal { get; set; }

    /// <summary>Each passed file, in order: "connected Unix stream socket", or what it was instead.</summary>
    public ConcurrentQueue<string> PassedFiles { get; } = new();

    public DeviceAddReply AddDevice(DeviceAddRequest request, KvmPS.Devices.Config.PassedFiles files)
    {
        using (files)
        {
            if (files.Count == 0) return AddDevice(request);
            if (!TakesPassedFiles) // not recorded in Requests: refused before the device is looked at
                throw new ControlProtocolException(ControlErrorCodes.InvalidArgument,
                    PassedFilesRefusal ?? $"{DeviceAddRequest.Name}: unknown field 'passed_files' (this control takes no passed files)");
            foreach (var file in files.TakeAll())
                using (file) PassedFiles.Enqueue(KvmPS.Interop.UnixStreamSockets.WhyNotConnected(file) ?? "connected Unix stream socket");
        }
        return AddDevice(request);
    }

    public IReadOnlyList<DeviceDescription> Devices
    {
        get
        {
            lock (_lock)
                return _devices.ToList();
        }
    }

    public string? Option(string pci, string key) =>
        Devices.FirstOrDefault(d => d.Pci == pci)?.Options?.TryGetValue(key, out var v) == true ? v.ToString() : null;

    public DescribeReply Describe()
    {
        lock (_lock)
        {
            _devices.RemoveAll(d => _ejectRequested.Contains(d.Pci) && GuestEjects(d.Pci));
            _ejectRequested.RemoveWhere(pci => _devices.All(d => d.Pci != pci));
        }
        var requests = ControlRequests.Core.ToList();
        if (Hotplug == HotplugSupport.NotListed)
            requests.RemoveAll(r => r is DeviceAddRequest.Name or DeviceRemoveRequest.Name);
        if (MediaChange is not null)
            requests.Add(MediaChangeRequest.Name);
        return new DescribeReply
        {
            Vmm = "kvmps-vmm",
            Version = "fake",
            Pid = Environment.ProcessId,
            MemoryBytes = 256L << 20,
            Vcpus = 1,
            MaxVcpus = 1,
            PresentVcpus = 1,
            Devices = Devices,
            Requests = requests,
        };
    }

    public StatusReply Status() => new() { State = VmStateNames.Running, Boots = 1, Vcpus = [new VcpuStateReply(0, "Running")] };

    public MetricsReply Metrics() => new();

    public void Pause() { }

    public void Resume() { }

    public StopReply Stop(StopRequest request) =>
        throw new ControlProtocolException(ControlErrorCodes.InvalidState, "the fake VMM does not stop");

    public void StopReplySent() { }

    public DeviceAddReply AddDevice(DeviceAddRequest request)
    {
        Requests.Enqueue(request);
        if (Hotplug != HotplugSupport.Answers)
            throw new ControlProtocolException(ControlErrorCodes.UnknownRequest, $"this kvmps-vmm does not implement '{DeviceAddRequest.Name}'");
        if (RefuseAdd is { } reason && (RefuseAddWhen is null || RefuseAddWhen(request.Device)))
            throw new ControlProtocolException(ControlErrorCodes.InvalidArgument, reason);
        lock (_lock)
        {
            var device = Describe(request.Device, request.Pci ?? NextFreePci(), hotplugged: true, removable: true);
            _devices.Add(device);
            return new DeviceAddReply { Device = device };
        }
    }

    public DeviceRemoveReply RemoveDevice(DeviceRemoveRequest request)
    {
        Requests.Enqueue(request);
        if (Hotplug != HotplugSupport.Answers)
            throw new ControlProtocolException(ControlErrorCodes.UnknownRequest, $"this kvmps-vmm does not implement '{DeviceRemoveRequest.Name}'");
        lock (_lock)
        {
            var device = _devices.FirstOrDefault(d => d.Pci == request.Pci)
                         ?? throw new ControlProtocolException(ControlErrorCodes.InvalidArgument, $"pci: no hot-pluggable device at {request.Pci}");
            if (device.Hotplugged != true && (!RemovesConfiguredDevices || device.Removable != true))
                throw new ControlProtocolException(ControlErrorCodes.InvalidArgument, $"PCI device {request.Pci} is part of the VM's configuration (cold-plugged) and cannot be removed while it runs");
            // A guest takes a moment to eject: a request that does not wait finds it still there, the next describe finds it gone.
            var asked = _ejectRequested.Add(request.Pci);
            if (!GuestEjects(request.Pci) || (asked && request.TimeoutMs is null or 0))
            {
                if (!GuestEjects(request.Pci) && request.TimeoutMs > 0)
                    Monitor.Wait(_lock, request.TimeoutMs.Value); // as the VMM does: the reply waits out the timeout
                return new DeviceRemoveReply { Pci = request.Pci, State = DeviceRemoveReply.Removing, TimedOut = request.TimeoutMs > 0 };
            }
            _devices.Remove(device);
            _ejectRequested.Remove(request.Pci);
            return new DeviceRemoveReply { Pci = request.Pci, State = DeviceRemoveReply.Removed };
        }
    }

    /// <summary>
    /// Set: the VMM answers <c>media.change</c> (and lists it) with this; it may throw a <see cref="ControlProtocolException"/>
    /// to refuse (as a VMM does for a locked tray). The drive's <c>path</c> option follows a successful change.
    /// </summary>
    public Func<MediaChangeRequest, MediaStateReply>? MediaChange { get; set; }

    /// <summary>Set: the VMM answers <c>display.get</c> with this.</summary>
    public DisplayStateReply? Display { get; set; }

    /// <summary>
    /// media.change with its passed ISO: with <see cref="TakesPassedFiles"/> each file is recorded in
    /// <see cref="PassedFiles"/> as "PATH read-only" (or "PATH writable"), and closed; without, refused as a VMM from
    /// before passed media, not recorded in <see cref="Requests"/>.
    /// </summary>
    public bool TryHandleDeviceRequest(ControlRequest request, KvmPS.Devices.Config.PassedFiles files, out JsonElement result)
    {
        using (files)
        {
            if (files.Count > 0 && !TakesPassedFiles)
                throw new ControlProtocolException(ControlErrorCodes.InvalidArgument, $"{request.Request}: unknown field 'passed_files' (this control takes no passed files)");
            foreach (var file in files.TakeAll())
                using (file) PassedFiles.Enqueue(DescribeOpenFile(file));
        }
        return TryHandleDeviceRequest(request, out result);
    }

    /// <summary>"PATH read-only": what a passed file is (its path by /proc/self/fd, its access mode by /proc/self/fdinfo's octal flags).</summary>
    private static string DescribeOpenFile(Microsoft.Win32.SafeHandles.SafeFileHandle file)
    {
        int fd = (int)file.DangerousGetHandle();
        string path = File.ResolveLinkTarget($"/proc/self/fd/{fd}", returnFinalTarget: false)?.FullName ?? "?";
        string flags = File.ReadLines($"/proc/self/fdinfo/{fd}").First(l => l.StartsWith("flags:", StringComparison.Ordinal))["flags:".Length..].Trim();
        return $"{path} {((Convert.ToInt32(flags, 8) & 3) == 0 ? "read-only" : "writable")}"; // O_ACCMODE 3, O_RDONLY 0
    }

    public bool TryHandleDeviceRequest(ControlRequest request, out JsonElement result)
    {
        result = default;
        if (request is DisplayGetRequest && Display is { } display)
        {
            result = JsonSerializer.SerializeToElement(display, ContractJsonContext.Default.DisplayStateReply);
            return true;
        }
        if (request is not MediaChangeRequest media || MediaChange is null)
            return false;
        Requests.Enqueue(request);
        var reply = MediaChange(media);
        lock (_lock)
        {
            var index = _devices.FindIndex(d => d.Pci == media.Pci);
            if (index >= 0)
                _devices[index] = Describe(new CdromDeviceSpec { Path = media.Path }, media.Pci, _devices[index].Hotplugged == true, _devices[index].Removable == true);
        }
        result = JsonSerializer.SerializeToElement(reply, ContractJsonContext.Default.MediaStateReply);
        return true;
    }

    public void CheckConsoleAttach() => throw new ControlProtocolException(ControlErrorCodes.InvalidState, "the fake VMM has no console");

    public ConsoleHub Console { get; }

    public void ConsoleInput(ReadOnlySpan<byte> data) { }

    public void Dispose()
    {
        _server.Dispose();
        Console.Dispose();
    }

    private string NextFreePci()
    {
        for (var slot = 1; ; slot++)
        {
            var pci = $"00:{slot:x2}.0";
            if (_devices.All(d => d.Pci != pci))
                return pci;
        }
    }

    /// <summary>The options as the engine's devices describe themselves (Block/NetDeviceConfig.Describe), and whether it was hot-plugged.</summary>
    private DeviceDescription Describe(DeviceSpec spec, string pci, bool hotplugged, bool removable)
    {
        var options = spec switch
        {
            BlockDeviceSpec b => new Dictionary<string, object?> { ["path"] = b.Path, ["format"] = b.Format?.ToString().ToLowerInvariant(), ["read_only"] = b.ReadOnly ?? false, ["serial"] = b.Serial },
            NetDeviceSpec n => new Dictionary<string, object?> { ["tap"] = n.Tap, ["bridge"] = n.Bridge, ["mac"] = n.Mac },
            CdromDeviceSpec c => new Dictionary<string, object?> { ["path"] = c.Path },
            VfioUserDeviceSpec u => new Dictionary<string, object?> { ["socket"] = u.Socket },
            VfioDeviceSpec v => new Dictionary<string, object?> { ["host"] = v.Host },
            _ => new Dictionary<string, object?>(),
        };
        return new DeviceDescription
        {
            Type = spec.Type,
            Pci = pci,
            Hotplugged = hotplugged,
            Removable = RemovesConfiguredDevices ? removable : null,
            Options = options.Where(o => o.Value is not null).ToDictionary(o => o.Key, o => JsonSerializer.SerializeToElement(o.Value)),
        };
    }
}

public enum HotplugSupport
{
    /// <summary>device.add and device.remove work.</summary>
    Answers,

    /// <summary>Listed in describe (they are core requests) but refused as unknown: a VMM built before the engine side.</summary>
    UnknownRequest,

    /// <summary>Not listed in describe at all: a VMM from before the contract.</summary>
    NotListed,
}
