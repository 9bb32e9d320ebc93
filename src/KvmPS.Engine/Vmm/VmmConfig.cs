using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;
using KvmPS.Contract;
using KvmPS.Devices.Config;
using KvmPS.Devices.Legacy;
using KvmPS.Devices.Virtio.Mem;
using KvmPS.Devices.Virtio.Rng;
using KvmPS.Vm;

namespace KvmPS.Vmm;

/// <summary>A configuration file or command line that cannot be used; names the file or flag.</summary>
public sealed class VmmConfigException(string message) : Exception(message);

public enum SerialMode { Stdio, File, None }

/// <summary>What to do when the guest crashes.</summary>
public enum CrashPolicy
{
    /// <summary>Stay up in the Crashed state so the reason and registers can be read over the control socket.</summary>
    Stay,
    /// <summary>Exit with <see cref="KvmPS.Contract.VmmExitCode.GuestCrashed"/>.</summary>
    Exit,
}

/// <summary>The whole configuration of one kvmps-vmm process: JSON file (--config) and/or flags.</summary>
public sealed record VmmConfig
{
    public MachineConfig Machine { get; init; } = new();
    public SerialMode Serial { get; init; } = SerialMode.Stdio;
    public string? SerialPath { get; init; }
    /// <summary>With a serial file: rotate it at this size (0: never); <see cref="RotatingLogFile"/>.</summary>
    public long SerialLogMaxBytes { get; init; } = RotatingLogFile.DefaultMaxBytes;
    /// <summary>With a serial file: rotated files kept beside it.</summary>
    public int SerialLogFiles { get; init; } = RotatingLogFile.DefaultKeptFiles;
    public string? ControlSocket { get; init; }
    public CrashPolicy OnCrash { get; init; } = CrashPolicy.Exit;
    /// <summary>True when on_crash was given; otherwise it follows whether a control socket exists.</summary>
    public bool OnCrashExplicit { get; init; }
    /// <summary>Firmware boot: where the debug console (port 0x402, SeaBIOS's log) goes: null (dropped), "stderr", or a file path.</summary>
    public string? DebugCon { get; init; }
    /// <summary>The VNC server (config <c>vnc</c>, <c>--display vnc,...</c>), checked; null without one.</summary>
    public KvmPS.Vmm.Vnc.VncSettings? Vnc { get; init; }

    public CrashPolicy EffectiveCrashPolicy => OnCrashExplicit ? OnCrash : ControlSocket is null ? CrashPolicy.Exit : CrashPolicy.Stay;

    /// <summary>The command-line flags that set one configuration field (<c>--memory</c> sets <c>memory_bytes</c>).</summary>
    public static readonly string[] Keys =
        ["kernel", "initrd", "cmdline", "memory", "max_memory", "vcpus", "max_vcpus", "serial", "serial_log_max", "serial_log_files", "control_socket", "hugepages", "ksm", "numa_node", "memfd", "dirty_ring_entries", "on_reset", "on_crash", "kvm_device", "rng", "firmware", "debugcon", "boot_order", "boot_once", "display"];

    /// <summary>Largest guest memory accepted: 1 PiB, far beyond any host; it keeps sizes from overflowing.</summary>
    public const ulong MaxMemoryBytes = 1UL << 50;

    /// <summary>
    /// The configuration as the wire contract's record (docs/vmm.md, "Configuration"): every field explicit, devices
    /// from the file and from --device flags in slot order. It reads back into an equal configuration; a snapshot
    /// stores it as config.json.
    /// </summary>
    public VmmConfiguration Configuration { get; init; } = new();

    /// <summary>Parses "256M", "1G", "512MiB", "1048576" (bytes) and the like.</summary>
    public static ulong ParseSize(string text, string source)
    {
        string t = text.Trim();
        int i = 0;
        while (i < t.Length && (char.IsDigit(t[i]) || t[i] == '.')) i++;
        if (i == 0 || !double.TryParse(t[..i], NumberStyles.Float, CultureInfo.InvariantCulture, out double number))
            throw new VmmConfigException($"{source}: '{text}' is not a size (use bytes or a suffix: 256M, 1G).");
        ulong unit = t[i..].Trim().ToUpperInvariant() switch
        {
            "" or "B" => 1,
            "K" or "KB" or "KIB" => 1UL << 10,
            "M" or "MB" or "MIB" => 1UL << 20,
            "G" or "GB" or "GIB" => 1UL << 30,
            "T" or "TB" or "TIB" => 1UL << 40,
            _ => throw new VmmConfigException($"{source}: '{text}' has an unknown size suffix '{t[i..]}' (use K, M, G or T)."),
        };
        double bytes = number * unit;
        if (bytes < 1 || bytes > MaxMemoryBytes) throw new VmmConfigException($"{source}: '{text}' is out of range.");
        return (ulong)bytes;
    }

    private static (SerialMode, string?) ParseSerial(string value, string source) => value switch
    {
        "stdio" => (SerialMode.Stdio, null),
        "none" => (SerialMode.None, null),
        _ when value.StartsWith("file:", StringComparison.Ordinal) && value.Length > 5 => (SerialMode.File, value[5..]),
        _ => throw new VmmConfigException($"{source}: '{value}' is not a serial mode (stdio, none or file:PATH)."),
    };

    private static string? ParseDebugCon(string value, string source) => value switch
    {
        "none" => null,
        "stderr" => "stderr",
        _ when value.StartsWith("file:", StringComparison.Ordinal) && value.Length > 5 => value[5..],
        _ => throw new VmmConfigException($"{source}: '{value}' is not a debug console mode (none, stderr or file:PATH)."),
    };

    /// <summary>Reads a JSON configuration file; unknown fields and wrong types are errors that name the file and field.</summary>
    public static VmmConfig FromJsonFile(string path)
    {
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new VmmConfigException($"{path}: cannot read the configuration file: {IoErrorText.Describe(e, path)}"); }
        return FromJson(bytes, path);
    }

    public static VmmConfig FromJson(string json, string source) => FromJson(Encoding.UTF8.GetBytes(json), source);

    public static VmmConfig FromJson(ReadOnlySpan<byte> json, string source)
    {
        VmmConfiguration file;
        try { file = ContractJson.ReadConfiguration(json, source); }
        catch (ContractException e) { throw new VmmConfigException(e.Message); }
        return FromConfiguration(file, field => $"{source}: field '{field}'", []);
    }

    /// <summary>
    /// Builds the engine's configuration from the contract record. <paramref name="where"/> names a field's origin for
    /// messages (file and field, or the flag that set it); <paramref name="flagDevices"/> come after the record's devices.
    /// </summary>
    private static VmmConfig FromConfiguration(VmmConfiguration c, Func<string, string> where, IReadOnlyList<DeviceConfig> flagDevices)
    {
        var m = new MachineConfig();
        var devices = new List<DeviceConfig>();
        if (c.Devices is { } specs)
            for (int i = 0; i < specs.Count; i++)
                devices.Add(ParseDevice(() => DeviceOptions.FromJson(JsonSerializer.SerializeToElement(specs[i], ContractJsonContext.Default.DeviceSpec), where($"devices[{i}]"))));
        devices.AddRange(flagDevices);
        if (c.Rng is { } rng)
        {
            // Sugar for a virtio-rng entry in "devices", after the others.
            devices.RemoveAll(d => d is RngDeviceConfig);
            if (rng) devices.Add(new RngDeviceConfig());
        }
        if (c.MemoryBytes is long memory && (memory < 1 || (ulong)memory > MaxMemoryBytes))
            throw new VmmConfigException($"{where("memory_bytes")}: {memory} is out of range (1 to {MaxMemoryBytes}).");
        if (c.MemoryMaximumBytes is long maximum && (maximum < 1 || (ulong)maximum > MaxMemoryBytes))
            throw new VmmConfigException($"{where("memory_maximum_bytes")}: {maximum} is out of range (1 to {MaxMemoryBytes}).");
        ulong memoryBytes = c.MemoryBytes is long mb ? (ulong)mb : m.MemoryBytes;
        ulong maximumBytes = c.MemoryMaximumBytes is long mx ? (ulong)mx : 0;
        if (maximumBytes != 0 && maximumBytes < memoryBytes)
            throw new VmmConfigException($"{where("memory_maximum_bytes")}: {maximumBytes} is below memory_bytes ({memoryBytes}).");
        int displays = devices.Count(d => d is Devices.Display.DisplayDeviceConfig);
        if (displays > 1) throw new VmmConfigException($"{where("devices")}: {displays} display devices (a VM has at most one).");
        int memDevices = devices.Count(d => d is MemDeviceConfig);
        if (memDevices > 1) throw new VmmConfigException($"{where("devices")}: {memDevices} virtio-mem devices (one covers the whole hot-plug region).");
        if (maximumBytes > memoryBytes)
        {
            // The hot-plug region needs its device; an explicit one (with its block size) comes from "devices".
            if (memDevices == 0) devices.Add(new MemDeviceConfig());
            ulong block = devices.OfType<MemDeviceConfig>().Single().BlockSizeBytes;
            if ((maximumBytes - memoryBytes) % block != 0)
                throw new VmmConfigException($"{where("memory_maximum_bytes")}: {maximumBytes} minus memory_bytes ({memoryBytes}) is not a multiple of the {block}-byte virtio-mem block size.");
        }
        else if (memDevices > 0)
            throw new VmmConfigException($"{where("devices")}: a virtio-mem device (type mem) needs memory_maximum_bytes above memory_bytes.");
        uint removedSlots = ParseRemovedDevices(c.RemovedDevices, devices, where("removed_devices"));
        var bootOrder = ParseBootOrder(c.BootOrder, devices, removedSlots, where("boot_order"));
        var bootOnce = ParseBootOrder(c.BootOnce, devices, removedSlots, where("boot_once"));
        if ((bootOrder ?? bootOnce) is not null && c.Firmware is null)
            throw new VmmConfigException($"{where(bootOrder is not null ? "boot_order" : "boot_once")}: a boot order needs firmware boot (firmware); a kernel boot has no boot devices to order.");
        if (c.Firmware is { Length: 0 }) throw new VmmConfigException($"{where("firmware")}: the firmware path is empty.");
        var (serial, serialPath) = c.Serial is { } s ? ParseSerial(s, where("serial")) : (SerialMode.Stdio, null);
        long serialLogMax = c.SerialLogMaxBytes ?? RotatingLogFile.DefaultMaxBytes;
        if (serialLogMax != 0 && serialLogMax < RotatingLogFile.MinimumMaxBytes)
            throw new VmmConfigException($"{where("serial_log_max_bytes")}: {serialLogMax} is below {RotatingLogFile.MinimumMaxBytes} bytes (0: no limit).");
        int serialLogFiles = c.SerialLogFiles ?? RotatingLogFile.DefaultKeptFiles;
        if (serialLogFiles is < 0 or > RotatingLogFile.MaximumKeptFiles)
            throw new VmmConfigException($"{where("serial_log_files")}: {serialLogFiles} is not 0 to {RotatingLogFile.MaximumKeptFiles}.");
        m = m with
        {
            KernelPath = c.Kernel,
            InitrdPath = c.Initrd,
            Cmdline = c.Cmdline ?? m.Cmdline,
            MemoryBytes = memoryBytes,
            MemoryMaximumBytes = maximumBytes,
            VcpuCount = c.Vcpus ?? m.VcpuCount,
            MaxVcpus = c.MaxVcpus ?? m.MaxVcpus,
            Memory = m.Memory with
            {
                HugePages = c.Hugepages switch
                {
                    HugePageBacking.Thp => HugePageMode.TransparentHugePages,
                    HugePageBacking.Hugetlbfs => HugePageMode.HugeTlbFs,
                    _ => HugePageMode.None,
                },
                Ksm = c.Ksm ?? m.Memory.Ksm,
                NumaNode = c.NumaNode,
                // A vfio-user server maps guest RAM for DMA: it must be in memfds unless the configuration says otherwise.
                Memfd = c.Memfd ?? devices.Any(d => d is Devices.Passthrough.VfioUserDeviceConfig),
            },
            OnReset = c.OnReset == GuestResetAction.Stop ? ResetPolicy.Stop : ResetPolicy.Reboot,
            DirtyRingEntries = DirtyRingEntriesOf(c.DirtyRingEntries, where("dirty_ring_entries")),
            KvmDevicePath = c.KvmDevice ?? m.KvmDevicePath,
            FirmwarePath = c.Firmware,
            Devices = devices,
            RemovedDeviceSlots = removedSlots,
            BootOrder = bootOrder,
            BootOnce = bootOnce,
        };
        return new VmmConfig
        {
            Machine = m,
            Serial = serial,
            SerialPath = serialPath,
            SerialLogMaxBytes = serialLogMax,
            SerialLogFiles = serialLogFiles,
            ControlSocket = c.ControlSocket,
            OnCrash = c.OnCrash == GuestCrashAction.Stay ? CrashPolicy.Stay : CrashPolicy.Exit,
            OnCrashExplicit = c.OnCrash is not null,
            DebugCon = c.Debugcon is { } d ? ParseDebugCon(d, where("debugcon")) : null,
            Vnc = c.Vnc is { } vnc ? ParseVnc(vnc, devices, where) : null,
        }.WithCanonicalConfiguration();
    }

    /// <summary>The <c>vnc</c> settings; a VNC server needs a display device to show.</summary>
    private static KvmPS.Vmm.Vnc.VncSettings ParseVnc(VncSpec spec, IReadOnlyList<DeviceConfig> devices, Func<string, string> where)
    {
        string Field(string name) => where("vnc") is var w && w.StartsWith("--", StringComparison.Ordinal) ? $"{w} ({name})" : where($"vnc.{name}");
        var settings = KvmPS.Vmm.Vnc.VncSettings.From(spec, Field);
        if (!devices.Any(d => d.Type == DisplayDeviceSpec.TypeName))
            throw new VmmConfigException($"{where("vnc")}: a VNC server needs a display device to show: add a devices entry of type display (--device display).");
        return settings;
    }

    /// <summary>Fills <see cref="Configuration"/> from the parsed values: every field explicit, devices as the VMM reads them.</summary>
    private VmmConfig WithCanonicalConfiguration()
    {
        var m = Machine;
        var devices = new List<DeviceSpec>(m.Devices.Count);
        foreach (var device in m.Devices)
        {
            // A device describes itself with the same keys it is configured with.
            var buffer = new ArrayBufferWriter<byte>(256);
            using (var w = new Utf8JsonWriter(buffer))
            {
                w.WriteStartObject();
                w.WriteString("type", device.Type);
                device.Describe(w);
                w.WriteEndObject();
            }
            devices.Add(JsonSerializer.Deserialize(buffer.WrittenSpan, ContractJsonContext.Default.DeviceSpec)!);
        }
        return this with
        {
            Configuration = new VmmConfiguration
            {
                Kernel = m.KernelPath,
                Initrd = m.InitrdPath,
                Cmdline = m.Cmdline,
                MemoryBytes = (long)m.MemoryBytes,
                MemoryMaximumBytes = m.MemoryMaximumBytes == 0 ? null : (long)m.MemoryMaximumBytes,
                Vcpus = m.VcpuCount,
                MaxVcpus = m.EffectiveMaxVcpus,
                Serial = Serial switch { SerialMode.File => "file:" + SerialPath, SerialMode.None => "none", _ => "stdio" },
                SerialLogMaxBytes = SerialLogMaxBytes,
                SerialLogFiles = SerialLogFiles,
                ControlSocket = ControlSocket,
                Hugepages = m.Memory.HugePages switch
                {
                    HugePageMode.TransparentHugePages => HugePageBacking.Thp,
                    HugePageMode.HugeTlbFs => HugePageBacking.Hugetlbfs,
                    _ => HugePageBacking.None,
                },
                Ksm = m.Memory.Ksm,
                NumaNode = m.Memory.NumaNode,
                Memfd = m.Memory.Memfd ? true : null,
                DirtyRingEntries = m.DirtyRingEntries > 0 ? m.DirtyRingEntries : null,
                OnReset = m.OnReset == ResetPolicy.Stop ? GuestResetAction.Stop : GuestResetAction.Reboot,
                OnCrash = EffectiveCrashPolicy == CrashPolicy.Stay ? GuestCrashAction.Stay : GuestCrashAction.Exit,
                KvmDevice = m.KvmDevicePath,
                Devices = devices,
                RemovedDevices = m.RemovedDeviceSlots == 0 ? null
                    : [.. Enumerable.Range(1, 31).Where(slot => (m.RemovedDeviceSlots & (1u << slot)) != 0).Select(PciAddresses.Format)],
                Firmware = m.FirmwarePath,
                Debugcon = DebugCon switch { null => "none", "stderr" => "stderr", var path => "file:" + path },
                BootOrder = m.BootOrder is { } order ? [.. order.Select(PciAddresses.Format)] : null,
                BootOnce = m.BootOnce is { } once ? [.. once.Select(PciAddresses.Format)] : null,
                Vnc = Vnc is { } vnc ? new VncSpec { UnixPath = vnc.UnixPath, Tcp = vnc.TcpText, PasswordFile = vnc.PasswordFile } : null,
            },
        };
    }

    /// <summary>"removed_devices": each a PCI address of a configured device that can be removed live (Vm/ConfiguredDeviceSlots).</summary>
    private static uint ParseRemovedDevices(IReadOnlyList<string>? addresses, IReadOnlyList<DeviceConfig> devices, string where)
    {
        uint slots = 0;
        foreach (var address in addresses ?? [])
        {
            int slot;
            try { slot = PciAddresses.Parse(address, "address"); }
            catch (ArgumentException e) { throw new VmmConfigException($"{where}: {e.Message}"); }
            if (ConfiguredDeviceSlots.WhyNotRemovable(devices, slot) is { } why)
                throw new VmmConfigException($"{where}: {PciAddresses.Format(slot)} cannot be a removed device: {why}.");
            slots |= 1u << slot;
        }
        return slots;
    }

    /// <summary>
    /// "boot_order" / "boot_once": PCI addresses of configured block, cdrom or net devices, each once. Anything else (a
    /// bad address, an empty or removed slot, another device type) is an error naming the field and the address.
    /// </summary>
    private static IReadOnlyList<int>? ParseBootOrder(IReadOnlyList<string>? addresses, IReadOnlyList<DeviceConfig> devices, uint removedSlots, string where)
    {
        if (addresses is null) return null;
        if (addresses.Count == 0) throw new VmmConfigException($"{where}: the list is empty (leave it out to boot the first disk).");
        var slots = new List<int>(addresses.Count);
        foreach (var address in addresses)
        {
            int slot;
            try { slot = PciAddresses.Parse(address ?? "", "address"); }
            catch (ArgumentException e) { throw new VmmConfigException($"{where}: {e.Message}"); }
            string pci = PciAddresses.Format(slot);
            if (slot > devices.Count) throw new VmmConfigException($"{where}: {pci} holds no configured device ({devices.Count} configured, in slots 00:01.0 onwards).");
            if ((removedSlots & (1u << slot)) != 0) throw new VmmConfigException($"{where}: {pci} is a removed device (removed_devices).");
            var device = devices[slot - 1];
            if (device.Type is not ("block" or "cdrom" or "net"))
                throw new VmmConfigException($"{where}: {pci} is a {device.Type} device; only block, cdrom and net devices can boot.");
            if (slots.Contains(slot)) throw new VmmConfigException($"{where}: {pci} is listed twice.");
            slots.Add(slot);
        }
        return slots;
    }

    private static DeviceConfig ParseDevice(Func<DeviceOptions> options)
    {
        try { return DeviceConfig.FromOptions(options()); }
        catch (DeviceConfigException x) { throw new VmmConfigException(x.Message); }
    }

    /// <summary>0 or absent: the bitmap; else a ring size KVM can take (whether this host has a ring is known at build).</summary>
    private static int DirtyRingEntriesOf(int? entries, string where)
    {
        if (entries is null or 0) return 0;
        if (entries is < DirtyRings.MinEntries or > DirtyRings.MaxEntries || (entries & (entries - 1)) != 0)
            throw new VmmConfigException($"{where}: {entries} is not a power of two from {DirtyRings.MinEntries} to {DirtyRings.MaxEntries} (0: the dirty bitmap).");
        return entries.Value;
    }

    private static int ParseInt(string text, string flag) =>
        int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int n) ? n : throw new VmmConfigException($"{flag}: '{text}' is not a whole number.");

    private static bool ParseOnOff(string text, string flag) =>
        text switch { "on" or "true" or "1" => true, "off" or "false" or "0" => false, _ => throw new VmmConfigException($"{flag}: '{text}' is not on or off.") };

    /// <summary>Sets the field a command-line flag stands for; the flag's value is text.</summary>
    private static VmmConfiguration ApplyFlag(VmmConfiguration c, string key, string value, string flag) => key switch
    {
        "kernel" => c with { Kernel = value },
        "initrd" => c with { Initrd = value },
        "cmdline" => c with { Cmdline = value },
        "memory" => c with { MemoryBytes = (long)ParseSize(value, flag) },
        "max_memory" => c with { MemoryMaximumBytes = (long)ParseSize(value, flag) },
        "vcpus" => c with { Vcpus = ParseInt(value, flag) },
        "max_vcpus" => c with { MaxVcpus = ParseInt(value, flag) },
        "serial" => c with { Serial = value }, // checked with the other fields, naming this flag
        "serial_log_max" => c with { SerialLogMaxBytes = value.Trim() == "0" ? 0 : (long)ParseSize(value, flag) },
        "serial_log_files" => c with { SerialLogFiles = ParseInt(value, flag) },
        "control_socket" => c with { ControlSocket = value },
        "hugepages" => c with
        {
            Hugepages = value switch
            {
                "none" => HugePageBacking.None,
                "thp" => HugePageBacking.Thp,
                "hugetlbfs" => HugePageBacking.Hugetlbfs,
                _ => throw new VmmConfigException($"{flag}: '{value}' is not a huge-page mode (none, thp or hugetlbfs)."),
            },
        },
        "ksm" => c with { Ksm = ParseOnOff(value, flag) },
        "numa_node" => c with { NumaNode = ParseInt(value, flag) },
        "memfd" => c with { Memfd = ParseOnOff(value, flag) },
        "dirty_ring_entries" => c with { DirtyRingEntries = ParseInt(value, flag) },
        "on_reset" => c with
        {
            OnReset = value switch { "reboot" => GuestResetAction.Reboot, "stop" => GuestResetAction.Stop, _ => throw new VmmConfigException($"{flag}: '{value}' is not reboot or stop.") },
        },
        "on_crash" => c with
        {
            OnCrash = value switch { "stay" => GuestCrashAction.Stay, "exit" => GuestCrashAction.Exit, _ => throw new VmmConfigException($"{flag}: '{value}' is not stay or exit.") },
        },
        "kvm_device" => c with { KvmDevice = value },
        "rng" => c with { Rng = ParseOnOff(value, flag) },
        "firmware" => c with { Firmware = value },
        "debugcon" => c with { Debugcon = value },
        "boot_order" => c with { BootOrder = value.Split(',') },
        "boot_once" => c with { BootOnce = value.Split(',') },
        "display" => c with { Vnc = KvmPS.Vmm.Vnc.VncSettings.ParseDisplayFlag(value, flag) },
        _ => throw new VmmConfigException($"unknown option {flag} (see --help)."),
    };

    /// <summary>The configuration fields each flag sets, for messages about a value that came from a flag.</summary>
    private static string FieldOfFlag(string key) => key switch { "memory" => "memory_bytes", "max_memory" => "memory_maximum_bytes", "serial_log_max" => "serial_log_max_bytes", "display" => "vnc", _ => key };

    /// <summary>Applies command-line flags on top of an optional --config file. Flags win over the file.</summary>
    public static VmmConfig FromArgs(IReadOnlyList<string> args)
    {
        var configuration = new VmmConfiguration();
        string? configFile = null;
        var flagOfField = new Dictionary<string, string>(StringComparer.Ordinal);
        var flags = new List<(string Key, string Value)>();
        var deviceFlags = new List<DeviceConfig>();
        for (int i = 0; i < args.Count; i++)
        {
            string a = args[i];
            string flag = a, value;
            int eq = a.IndexOf('=');
            if (a.StartsWith("--", StringComparison.Ordinal) && eq > 0) { flag = a[..eq]; value = a[(eq + 1)..]; }
            else if (flag is "--help" or "-h") throw new VmmHelpRequested();
            else if (flag is "--version") throw new VmmVersionRequested();
            else
            {
                if (!flag.StartsWith("--", StringComparison.Ordinal)) throw new VmmConfigException($"unexpected argument '{a}' (see --help).");
                if (i + 1 >= args.Count) throw new VmmConfigException($"{flag} needs a value.");
                value = args[++i];
            }
            string key = flag[2..].Replace('-', '_');
            if (key == "config")
            {
                configFile = value;
                byte[] bytes;
                try { bytes = File.ReadAllBytes(value); }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new VmmConfigException($"{value}: cannot read the configuration file: {IoErrorText.Describe(e, value)}"); }
                try { configuration = ContractJson.ReadConfiguration(bytes, value); }
                catch (ContractException e) { throw new VmmConfigException(e.Message); }
            }
            else if (key == "device")
                deviceFlags.Add(ParseDevice(() => DeviceOptions.FromFlag(value)));
            else if (Array.IndexOf(Keys, key) < 0) throw new VmmConfigException($"unknown option {flag} (see --help).");
            else flags.Add((key, value));
        }
        foreach (var (key, value) in flags)
        {
            string flag = $"--{key.Replace('_', '-')}";
            configuration = ApplyFlag(configuration, key, value, flag);
            flagOfField[FieldOfFlag(key)] = flag;
        }
        string Where(string field) =>
            flagOfField.TryGetValue(field, out var flag) ? flag : $"{configFile ?? "configuration"}: field '{field}'";
        var config = FromConfiguration(configuration, Where, deviceFlags);
        try { config.Machine.Validate(); }
        catch (ArgumentOutOfRangeException e) { throw new VmmConfigException(e.Message.Split(" (Parameter")[0]); }
        if (config.Serial == SerialMode.File && string.IsNullOrEmpty(config.SerialPath)) throw new VmmConfigException("serial file mode needs a path (file:PATH).");
        return config;
    }

    public const string Usage = """
        Usage: kvmps-vmm [--config FILE] [options]
        Runs one KVM virtual machine in this process.

          --config FILE           JSON configuration (fields: kernel, initrd, cmdline, memory_bytes,
                                  memory_maximum_bytes, vcpus, max_vcpus,
                                  serial, serial_log_max_bytes, serial_log_files, control_socket, hugepages, ksm, numa_node, rng, devices, on_reset, on_crash,
                                  kvm_device, firmware, debugcon, boot_order, boot_once, vnc; docs/vmm.md);
                                  flags given after it override the file
          --kernel PATH           bzImage or ELF64 kernel (default: the built-in guest)
          --initrd PATH           initial ramdisk
          --cmdline TEXT          kernel command line
          --memory SIZE           guest memory, e.g. 256M, 1G (default 256M)
          --max-memory SIZE       memory the guest may grow to while it runs (virtio-mem, memory.set;
                                  maximum minus memory in whole 2 MiB blocks; default: no growth)
          --vcpus N               vCPUs at boot (default 1)
          --max-vcpus N           vCPUs reserved in the firmware tables for hot-add (default: --vcpus)
          --serial MODE           stdio | file:PATH | none (default stdio)
          --serial-log-max SIZE   with file:PATH, rotate PATH to PATH.1 at this size (default 4M; 0: no limit)
          --serial-log-files N    rotated serial files kept, PATH.1 ... PATH.N (default 3)
          --control-socket PATH   Unix socket for the JSON control protocol (docs/vmm.md)
          --hugepages MODE        none | thp | hugetlbfs
          --ksm on|off            mark guest memory mergeable for KSM
          --numa-node N           bind guest memory to host NUMA node N
          --memfd on|off          guest memory in memfds, so a local live upgrade (migrate to unix:) passes it
                                  to the new VMM instead of copying it
          --dirty-ring-entries N  KVM's dirty ring, N entries per vCPU (a power of two, 1024-65536), instead of
                                  the dirty bitmap for migration and diff snapshots (default: the bitmap)
          --device TYPE[,k=v...]  a PCI device, repeatable, in slot order (docs/devices.md); types: rng, net, block,
                                  balloon, vsock, mem, cdrom
          --rng on|off            shorthand for --device rng
          --firmware PATH|seabios boot firmware from the reset vector instead of a kernel (seabios:
                                  /usr/share/seabios/bios-256k.bin); it boots the first block device
          --boot-order PCI,...    with firmware: the block, cdrom and net devices to boot from, in order, by
                                  PCI address (e.g. 00:03.0,00:01.0); only those are tried
          --boot-once PCI,...     like --boot-order for the first power-on; a guest reboot uses --boot-order
          --debugcon MODE         none | stderr | file:PATH: the debug console port 0x402 (SeaBIOS's log)
          --display vnc,unix=PATH[,tcp=ADDR:PORT][,password_file=FILE]
                                  a VNC (RFB 3.8) server on the display device, with PS/2 keyboard and
                                  mouse input; TCP beyond loopback needs password_file (docs/display.md)
          --on-reset reboot|stop  what a guest reset does (default reboot)
          --on-crash stay|exit    after a guest crash, stay up for inspection or exit 10
                                  (default: stay with a control socket, exit without)
          --incoming URI          wait for a live migration stream on tcp:ADDR:PORT or unix:PATH instead of
                                  booting, and run the VM it brings (docs/migration.md)
          --incoming-token-file FILE
                                  a source must present the token in FILE (mode 0600, deleted once read)
                                  before its stream; other connections are refused and the wait goes on
          --sandbox on|off        seccomp filters per thread and no_new_privs (default on; docs/confinement.md)
          --jail on|off           once the machine is built: a private root in its own mount namespace, then --user
                                  with no capabilities (needs root; default on exactly when --user is given)
          --user NAME|UID:GID     the jail's user (default kvmps)
          --cgroup PATH           join the cgroup PATH (kvmps/web) below the VMM's own, v2 or v1 cpu+memory
          --cpu-weight N          the cgroup's relative CPU weight, 1-10000 (cpu.weight; v1 cpu.shares N*1024/100)
          --cpu-max-percent N     cap the cgroup's CPU time at N% of ONE host CPU (cpu.max; v1 cfs_quota_us)
          --memory-max-bytes N    the cgroup's memory limit: guest RAM plus the VMM's own (memory.max)
          --acpi-tables-out DIR   write the ACPI tables this configuration gives the guest (DSDT.dat,
                                  APIC.dat, FACP.dat, ...) to DIR and exit (docs/acpi.md)

        Exit status: 0 powered off/stopped, 2 usage, 4 KVM unavailable, 6 bad image, 8 host resource,
        10 guest crashed, 12 internal error, 14 migrated away, 16 no VM received (--incoming),
        18 a thread made a syscall its sandbox forbids; (v << 1) | 1 when the guest writes v to the debug-exit port 0xf4.
        """;
}

public sealed class VmmHelpRequested() : Exception("help");
public sealed class VmmVersionRequested() : Exception("version");
