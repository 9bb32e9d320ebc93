namespace KvmPS.Management.Definitions;

/// <summary>
/// Everything needed to create and boot one VM. Immutable; <see cref="Validate"/> checks every rule and is
/// called by every producer (<see cref="VmDefinitionReader"/>, JSON) and consumer (the store) so an invalid
/// definition never reaches disk or the VMM. Error property names are the schema keys
/// (<c>MemoryStartupBytes</c>, <c>Disks[0].Format</c>), the same in manifests and JSON.
/// </summary>
public sealed record VmDefinition
{
    /// <summary>KVM maps guest RAM in whole pages.</summary>
    public const long PageBytes = 4096;

    /// <summary>hugetlbfs pages are 2 MiB, so RAM sizes must be multiples of that.</summary>
    public const long HugePageBytes = 2 * 1024 * 1024;

    public required string Name { get; init; }
    public required MemorySettings Memory { get; init; }
    public VcpuSettings Vcpus { get; init; } = VcpuSettings.Fixed(1);
    public BootSource Boot { get; init; } = DefaultGuestBoot.Instance;
    public ValueList<DiskDefinition> Disks { get; init; } = ValueList<DiskDefinition>.Empty;
    public ValueList<NetworkAdapterDefinition> NetworkAdapters { get; init; } = ValueList<NetworkAdapterDefinition>.Empty;

    /// <summary>virtio-balloon device present, letting the host reclaim memory down to the minimum.</summary>
    public bool BalloonEnabled { get; init; }

    /// <summary>CD/DVD drives, each with an ISO or empty (docs/installing-from-iso.md).</summary>
    public ValueList<DvdDriveDefinition> DvdDrives { get; init; } = ValueList<DvdDriveDefinition>.Empty;

    /// <summary>The order the firmware tries devices in (Hyper-V's boot order); empty: the boot disk first, as without one.</summary>
    public ValueList<BootDevice> BootOrder { get; init; } = ValueList<BootDevice>.Empty;

    /// <summary>The device to boot from at the next start only (cleared once that start is under way); null: none.</summary>
    public BootDevice? BootOnce { get; init; }

    /// <summary>A display device with a VNC server; null (default): no display, only the serial console.</summary>
    public DisplaySettings? Display { get; init; }

    /// <summary>Host PCI functions passed through with kernel VFIO (bound to vfio-pci at start, given back at stop).</summary>
    public ValueList<PciAddress> PciPassthrough { get; init; } = ValueList<PciAddress>.Empty;

    /// <summary>
    /// PCI devices served by other processes over vfio-user: each a server's Unix socket (absolute path), which must be
    /// listening when the VM starts (docs/devices.md "Passthrough").
    /// </summary>
    public ValueList<string> VfioUserDevices { get; init; } = ValueList<string>.Empty;
    public MemoryBackingSettings MemoryBacking { get; init; } = MemoryBackingSettings.Default;

    /// <summary>Start this VM when the host (the kvmps service) starts.</summary>
    public bool Autostart { get; init; }

    public string Notes { get; init; } = "";

    /// <summary>Default size at which serial.log and vmm.log rotate: 4 MiB (kvmps-vmm's --serial-log-max default).</summary>
    public const long DefaultLogMaxBytes = 4L << 20;
    /// <summary>Default number of rotated log files kept beside the current one (virtlogd keeps 3).</summary>
    public const int DefaultLogFileCount = 3;
    /// <summary>Smallest size limit (kvmps-vmm refuses less), so a typo cannot rotate on every line.</summary>
    public const long MinimumLogMaxBytes = 4096;
    /// <summary>Most rotated files kept (kvmps-vmm's limit).</summary>
    public const int MaximumLogFileCount = 100;

    /// <summary>
    /// serial.log and vmm.log each rotate to <c>.1</c> … at this size (0: never), so a guest printing without end fills
    /// at most (<see cref="LogFileCount"/> + 1) × this of the host's disk. Takes effect at the VMM's next start.
    /// </summary>
    public long LogMaxBytes { get; init; } = DefaultLogMaxBytes;

    /// <summary>Rotated files kept of serial.log and of vmm.log (0 to 100).</summary>
    public int LogFileCount { get; init; } = DefaultLogFileCount;

    /// <summary>
    /// The VMM's share of host CPU time against other VMs when the CPUs are busy, 1 to 10000 (Hyper-V's
    /// <c>Set-VMProcessor -RelativeWeight</c>; 100, the default, is an equal share). Its cgroup's <c>cpu.weight</c>
    /// (docs/confinement.md, "cgroup limits").
    /// </summary>
    public int CpuRelativeWeight { get; init; } = VmResourceLimits.DefaultCpuRelativeWeight;

    /// <summary>
    /// The most host CPU time the VM gets, in percent of its own vCPUs (Hyper-V's <c>Set-VMProcessor -Maximum</c>):
    /// 50 on a 4-vCPU VM is two host CPUs' worth. 1 to 100; 100 (the default) is no cap.
    /// </summary>
    public int CpuMaximumPercent { get; init; } = VmResourceLimits.NoCpuCapPercent;

    /// <summary>
    /// What the VMM may use beyond guest RAM (its runtime, device buffers, page tables): its cgroup's memory limit is
    /// MemoryMaximumBytes + this. 0 (the default): no limit; else at least 16 MiB in whole pages.
    /// </summary>
    public long VmmOverheadLimitBytes { get; init; }

    /// <summary>Throws <see cref="VmDefinitionException"/> for the first broken rule; returns this otherwise.</summary>
    public VmDefinition Validate()
    {
        VmName.Validate(Name);
        ValidateMemory();
        ValidateVcpus();
        ValidateDisks();
        ValidateBoot();
        ValidateNetworkAdapters();
        ValidatePciPassthrough();
        ValidateDvdDrivesAndDisplay();
        if (Notes is null)
            throw Fail("Notes", "must not be null");
        if (LogMaxBytes != 0 && LogMaxBytes < MinimumLogMaxBytes)
            throw Fail("LogMaxBytes", $"must be 0 (no limit) or at least {MinimumLogMaxBytes} bytes (got {LogMaxBytes})");
        if (LogFileCount is < 0 or > MaximumLogFileCount)
            throw Fail("LogFileCount", $"must be between 0 and {MaximumLogFileCount} (got {LogFileCount})");
        if (VmResourceLimits.Problem(this) is { } limit)
            throw Fail(limit.Property, limit.Problem);
        return this;
    }

    private void ValidateMemory()
    {
        if (Memory is null)
            throw Fail("MemoryStartupBytes", "is required");
        if (MemoryBacking is null)
            throw Fail("HugePages", "memory backing settings must not be null");
        var granularity = MemoryBacking.HugePages == HugePagesMode.Hugetlbfs ? HugePageBytes : PageBytes;
        var why = granularity == HugePageBytes ? "2 MiB (HugePages = hugetlbfs)" : "4096 (the page size)";
        foreach (var (property, bytes) in new[]
                 {
                     ("MemoryStartupBytes", Memory.StartupBytes),
                     ("MemoryMinimumBytes", Memory.MinimumBytes),
                     ("MemoryMaximumBytes", Memory.MaximumBytes),
                 })
        {
            if (bytes <= 0)
                throw Fail(property, $"must be positive (got {bytes})");
            if (bytes % granularity != 0)
                throw Fail(property, $"must be a multiple of {why} (got {bytes})");
        }
        // Checked first: a too-small maximum or too-large minimum is usually a mistake relative to startup.
        if (Memory.StartupBytes < Memory.MinimumBytes || Memory.StartupBytes > Memory.MaximumBytes)
            throw Fail("MemoryStartupBytes",
                $"must be within [MemoryMinimumBytes, MemoryMaximumBytes] = [{Memory.MinimumBytes}, {Memory.MaximumBytes}] (got {Memory.StartupBytes})");
        if (Memory.MinimumBytes > Memory.MaximumBytes)
            throw Fail("MemoryMinimumBytes", $"must not exceed MemoryMaximumBytes ({Memory.MinimumBytes} > {Memory.MaximumBytes})");
        // Memory above the startup amount is plugged in virtio-mem blocks of 2 MiB: a ceiling between two blocks could never be reached.
        if (Memory.MaximumBytes > Memory.StartupBytes && Memory.MaximumBytes % HugePageBytes != 0)
            throw Fail("MemoryMaximumBytes", $"must be a multiple of 2 MiB when above MemoryStartupBytes (memory is hot-plugged in 2 MiB blocks; got {Memory.MaximumBytes})");
        if (MemoryBacking.NumaNode is { } node && node is < 0 or > 1023)
            throw Fail("NumaNode", $"must be between 0 and 1023 (got {node})");
    }

    private void ValidateVcpus()
    {
        if (Vcpus is null)
            throw Fail("VcpuCount", "is required");
        if (Vcpus.Count < 1)
            throw Fail("VcpuCount", $"must be at least 1 (got {Vcpus.Count})");
        if (Vcpus.Maximum > VcpuSettings.Limit)
            throw Fail("VcpuMaximum", $"must be at most {VcpuSettings.Limit} (got {Vcpus.Maximum})");
        if (Vcpus.Count > Vcpus.Maximum)
            throw Fail("VcpuCount", $"must not exceed VcpuMaximum ({Vcpus.Count} > {Vcpus.Maximum})");
    }

    private void ValidateBoot()
    {
        void ValidateCmdline(string? cmdline)
        {
            if (cmdline is null) return;
            if (cmdline.Contains('\0'))
                throw Fail("Boot.Cmdline", "must not contain NUL characters");
            if (System.Text.Encoding.UTF8.GetByteCount(cmdline) > DirectKernelBoot.MaximumCmdlineBytes)
                throw Fail("Boot.Cmdline", $"must be at most {DirectKernelBoot.MaximumCmdlineBytes} bytes");
        }

        switch (Boot)
        {
            case null:
                throw Fail("Boot", "must not be null (use DefaultGuestBoot for the built-in guest)");
            case DirectKernelBoot kernel:
                RequirePath("Boot.KernelPath", kernel.KernelPath);
                if (kernel.InitrdPath is not null)
                    RequirePath("Boot.InitrdPath", kernel.InitrdPath);
                ValidateCmdline(kernel.Cmdline);
                break;
            case DefaultGuestBoot builtIn:
                ValidateCmdline(builtIn.Cmdline);
                break;
            case FirmwareBoot firmware:
                RequirePath("Boot.FirmwarePath", firmware.FirmwarePath);
                // A VM installing from a DVD may have no disk yet: then there is no boot disk to name.
                if (Disks.Count == 0 && DvdDrives is { Count: > 0 } && firmware.BootDiskIndex == 0)
                    break;
                if (firmware.BootDiskIndex < 0 || firmware.BootDiskIndex >= Disks.Count)
                    throw Fail("Boot.BootDiskIndex", Disks.Count == 0
                        ? "firmware boot needs a boot disk, but the VM has no disks"
                        : $"must be the index of a disk, 0 to {Disks.Count - 1} (got {firmware.BootDiskIndex})");
                break;
        }
    }

    private void ValidateDisks()
    {
        if (Disks is null)
            throw Fail("Disks", "must not be null");
        var seen = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < Disks.Count; i++)
        {
            var disk = Disks[i];
            var prefix = $"Disks[{i}]";
            if (disk is null)
                throw Fail(prefix, "must not be null");
            RequirePath(prefix + ".Path", disk.Path);
            if (!Enum.IsDefined(disk.Format))
                throw Fail(prefix + ".Format", "must be raw or qcow2");
            if (disk.SizeBytes is { } size && (size <= 0 || size % DiskDefinition.SectorBytes != 0))
                throw Fail(prefix + ".SizeBytes", $"must be a positive multiple of {DiskDefinition.SectorBytes} (got {size})");
            if (disk.BackingImagePath is not null)
            {
                if (disk.Format != DiskFormat.Qcow2)
                    throw Fail(prefix + ".BackingImagePath", "a backing image needs Format = qcow2");
                RequirePath(prefix + ".BackingImagePath", disk.BackingImagePath);
            }
            if (seen.TryGetValue(disk.Path, out var first))
                throw Fail(prefix + ".Path", $"'{disk.Path}' is already used by Disks[{first}]");
            seen.Add(disk.Path, i);
        }
    }

    private void ValidateNetworkAdapters()
    {
        if (NetworkAdapters is null)
            throw Fail("NetworkAdapters", "must not be null");
        var seen = new Dictionary<MacAddress, int>();
        for (var i = 0; i < NetworkAdapters.Count; i++)
        {
            var adapter = NetworkAdapters[i];
            var prefix = $"NetworkAdapters[{i}]";
            if (adapter is null)
                throw Fail(prefix, "must not be null");
            if ((adapter.TapName is null ? 0 : 1) + (adapter.BridgeName is null ? 0 : 1) + (adapter.NetworkName is null ? 0 : 1) + (adapter.SriovVf is null ? 0 : 1) != 1)
                throw Fail(prefix, "needs exactly one of Tap, Bridge, Network or SriovVf");
            ValidateSriovAdapter(i, adapter);
            if (adapter.NetworkName is { } network && !Networks.NetworkValidation.IsValidName(network))
                throw Fail(prefix + ".Network", $"'{network}' is not a valid network name (1-32 letters, digits, '-' or '_', starting with a letter or digit)");
            if (adapter.TapName is { } tap)
                ValidateInterfaceName(prefix + ".Tap", tap);
            if (adapter.BridgeName is { } bridge)
                ValidateInterfaceName(prefix + ".Bridge", bridge);
            var mac = adapter.MacAddress;
            if (mac.IsZero || !mac.IsUnicast)
                throw Fail(prefix + ".MacAddress", $"'{mac}' must be a unicast address (first octet even) and not all zeros");
            if (seen.TryGetValue(mac, out var first))
                throw Fail(prefix + ".MacAddress", $"'{mac}' is already used by NetworkAdapters[{first}]");
            seen.Add(mac, i);
        }
    }

    /// <summary>A VF adapter is a kernel-VFIO passthrough: once per VM, not also in PciPassthrough; a VLAN only for a VF.</summary>
    private void ValidateSriovAdapter(int index, NetworkAdapterDefinition adapter)
    {
        var prefix = $"NetworkAdapters[{index}]";
        if (adapter.VlanId is { } vlan)
        {
            if (adapter.SriovVf is null)
                throw Fail(prefix + ".VlanId", "applies to an SR-IOV adapter (SriovVf) only; a tap, bridge or network adapter is untagged");
            if (vlan is < NetworkAdapterDefinition.MinimumVlanId or > NetworkAdapterDefinition.MaximumVlanId)
                throw Fail(prefix + ".VlanId", $"must be a VLAN id from {NetworkAdapterDefinition.MinimumVlanId} to {NetworkAdapterDefinition.MaximumVlanId} (got {vlan})");
        }
        if (adapter.SriovVf is not { } vf)
            return;
        if (vf.Device > 0x1F || vf.Function > 7)
            throw Fail(prefix + ".SriovVf", $"'{vf}' is not a valid PCI address");
        for (var j = 0; j < index; j++)
            if (NetworkAdapters[j]?.SriovVf == vf)
                throw Fail(prefix + ".SriovVf", $"'{vf}' is already used by NetworkAdapters[{j}]");
        if (PciPassthrough is not null && PciPassthrough.Contains(vf))
            throw Fail(prefix + ".SriovVf", $"'{vf}' is also in PciPassthrough; give a VF either as a network adapter (its MAC and VLAN set by KvmPS) or as a plain passthrough device");
    }

    private void ValidatePciPassthrough()
    {
        if (PciPassthrough is null)
            throw Fail("PciPassthrough", "must not be null");
        var seen = new HashSet<PciAddress>();
        for (var i = 0; i < PciPassthrough.Count; i++)
        {
            var address = PciPassthrough[i];
            if (address.Device > 0x1F || address.Function > 7)
                throw Fail($"PciPassthrough[{i}]", $"'{address}' is not a valid PCI address");
            if (!seen.Add(address))
                throw Fail($"PciPassthrough[{i}]", $"'{address}' is listed twice");
        }
        if (VfioUserDevices is null)
            throw Fail("VfioUserDevices", "must not be null");
        var sockets = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < VfioUserDevices.Count; i++)
        {
            var socket = VfioUserDevices[i];
            if (string.IsNullOrEmpty(socket) || !Path.IsPathFullyQualified(socket))
                throw Fail($"VfioUserDevices[{i}]", $"'{socket}' must be an absolute path to the vfio-user server's Unix socket");
            if (socket.Contains('\0'))
                throw Fail($"VfioUserDevices[{i}]", "must not contain a NUL character");
            if (System.Text.Encoding.UTF8.GetByteCount(socket) > MaximumUnixSocketPathBytes)
                throw Fail($"VfioUserDevices[{i}]", $"'{socket}' is longer than a Unix socket path can be ({MaximumUnixSocketPathBytes} bytes)");
            if (!sockets.Add(socket))
                throw Fail($"VfioUserDevices[{i}]", $"'{socket}' is listed twice");
        }
        var vfAdapters = NetworkAdapters.Count(a => a.SriovVf is not null);
        if (PciPassthrough.Count + VfioUserDevices.Count + vfAdapters > MaximumPassthroughDevices)
            throw Fail("VfioUserDevices", $"at most {MaximumPassthroughDevices} passthrough devices in all (PciPassthrough, VfioUserDevices and SR-IOV network adapters: {PciPassthrough.Count + VfioUserDevices.Count + vfAdapters})");
    }

    /// <summary>sockaddr_un's sun_path holds 108 bytes with the terminating NUL.</summary>
    public const int MaximumUnixSocketPathBytes = 107;

    /// <summary>Passthrough devices a VM may have (the root bus has 32 slots, shared with every other device).</summary>
    public const int MaximumPassthroughDevices = 8;

    private void ValidateDvdDrivesAndDisplay()
    {
        if (DvdDrives is null)
            throw Fail("DvdDrives", "must not be null");
        if (DvdDrives.Count > DvdDriveDefinition.MaximumCount)
            throw Fail("DvdDrives", $"at most {DvdDriveDefinition.MaximumCount} drives (got {DvdDrives.Count})");
        for (var i = 0; i < DvdDrives.Count; i++)
        {
            if (DvdDrives[i] is not { } drive)
                throw Fail($"DvdDrives[{i}]", "must not be null");
            if (drive.Path is not null)
                RequirePath($"DvdDrives[{i}].Path", drive.Path);
        }
        if (BootOrder is null)
            throw Fail("BootOrder", "must not be null");
        for (var i = 0; i < BootOrder.Count; i++)
        {
            if (!Enum.IsDefined(BootOrder[i]))
                throw Fail($"BootOrder[{i}]", $"'{BootOrder[i]}' is not one of: Dvd, Disk, Network");
            if (BootOrder.Take(i).Contains(BootOrder[i]))
                throw Fail($"BootOrder[{i}]", $"'{BootOrder[i]}' is listed twice");
        }
        if (BootOnce is { } once && !Enum.IsDefined(once))
            throw Fail("BootOnce", $"'{once}' is not one of: Dvd, Disk, Network");
        // Only firmware reads a boot order; a kernel boot would silently ignore it.
        if ((BootOrder.Count > 0 || BootOnce is not null) && Boot is not FirmwareBoot)
            throw Fail(BootOrder.Count > 0 ? "BootOrder" : "BootOnce", "applies to firmware boot only (Boot.FirmwarePath, e.g. 'seabios')");
        if (Display is { } display)
        {
            if (DisplaySettings.VncProblem(display.Vnc, display.PasswordFile) is { } problem)
                throw Fail("Display.Vnc", problem);
            if (display.PasswordFile is not null)
                RequirePath("Display.PasswordFile", display.PasswordFile);
        }
    }

    private void ValidateInterfaceName(string property, string name)
    {
        // Mirrors the kernel's dev_valid_name(): 1-15 bytes, not "." or "..", no '/', ':' or whitespace.
        if (name.Length is 0 or > NetworkAdapterDefinition.MaximumInterfaceNameLength
            || name is "." or ".." || name.Any(c => c is '/' or ':' or '\0' || char.IsWhiteSpace(c) || c > 0x7E))
            throw Fail(property, $"'{name}' is not a valid interface name (1-15 characters, no '/', ':' or spaces)");
    }

    private void RequirePath(string property, string? path)
    {
        if (string.IsNullOrWhiteSpace(path))
            throw Fail(property, "is required");
        if (path.Contains('\0'))
            throw Fail(property, "must not contain NUL characters");
    }

    private VmDefinitionException Fail(string property, string reason) => new(Name ?? "", property, reason);
}
