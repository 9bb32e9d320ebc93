using System.Globalization;
using System.Text.Json;
using KvmPS.Devices.Config;
using KvmPS.Devices.Legacy;
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
    /// <summary>Exit with <see cref="VmmExitCode.GuestCrashed"/>.</summary>
    Exit,
}

/// <summary>The whole configuration of one kvmps-vmm process: JSON file (--config) and/or flags.</summary>
public sealed record VmmConfig
{
    public MachineConfig Machine { get; init; } = new();
    public SerialMode Serial { get; init; } = SerialMode.Stdio;
    public string? SerialPath { get; init; }
    public string? ControlSocket { get; init; }
    public CrashPolicy OnCrash { get; init; } = CrashPolicy.Exit;
    /// <summary>True when on_crash was given; otherwise it follows whether a control socket exists.</summary>
    public bool OnCrashExplicit { get; init; }
    /// <summary>Firmware boot: where the debug console (port 0x402, SeaBIOS's log) goes: null (dropped), "stderr", or a file path.</summary>
    public string? DebugCon { get; init; }

    public CrashPolicy EffectiveCrashPolicy => OnCrashExplicit ? OnCrash : ControlSocket is null ? CrashPolicy.Exit : CrashPolicy.Stay;

    public static readonly string[] Keys =
        ["kernel", "initrd", "cmdline", "memory", "vcpus", "max_vcpus", "serial", "control_socket", "hugepages", "ksm", "numa_node", "on_reset", "on_crash", "kvm_device", "rng", "devices", "firmware", "debugcon"];

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
        if (bytes < 1 || bytes > (1UL << 50)) throw new VmmConfigException($"{source}: '{text}' is out of range.");
        return (ulong)bytes;
    }

    private static (SerialMode, string?) ParseSerial(string value, string source) => value switch
    {
        "stdio" => (SerialMode.Stdio, null),
        "none" => (SerialMode.None, null),
        _ when value.StartsWith("file:", StringComparison.Ordinal) && value.Length > 5 => (SerialMode.File, value[5..]),
        _ => throw new VmmConfigException($"{source}: '{value}' is not a serial mode (stdio, none or file:PATH)."),
    };

    private static HugePageMode ParseHugePages(string value, string source) => value switch
    {
        "none" => HugePageMode.None,
        "thp" => HugePageMode.TransparentHugePages,
        "hugetlbfs" => HugePageMode.HugeTlbFs,
        _ => throw new VmmConfigException($"{source}: '{value}' is not a huge-page mode (none, thp or hugetlbfs)."),
    };

    /// <summary>Reads a JSON configuration file; unknown keys and wrong types are errors that name the file and key.</summary>
    public static VmmConfig FromJsonFile(string path)
    {
        string text;
        try { text = File.ReadAllText(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new VmmConfigException($"{path}: cannot read the configuration file: {e.Message}"); }
        return FromJson(text, path);
    }

    public static VmmConfig FromJson(string json, string source)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(json, new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true }); }
        catch (JsonException e) { throw new VmmConfigException($"{source}: invalid JSON at line {e.LineNumber + 1}, byte {e.BytePositionInLine + 1}: {e.Message}"); }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new VmmConfigException($"{source}: the configuration must be a JSON object.");
            var config = new VmmConfig();
            foreach (var p in doc.RootElement.EnumerateObject())
                config = config.With(p.Name, new ConfigValue(p.Value, null), $"{source}: key '{p.Name}'");
            return config;
        }
    }

    /// <summary>One configuration value: a JSON value from the file, or the text of a flag.</summary>
    private readonly record struct ConfigValue(JsonElement Json, string? Flag)
    {
        public static ConfigValue FromFlag(string text) => new(default, text);
        public bool IsNull => Flag is null && Json.ValueKind == JsonValueKind.Null;
        public bool IsJsonNumber => Flag is null && Json.ValueKind == JsonValueKind.Number;
    }

    private static string Str(ConfigValue v, string where) =>
        v.Flag ?? (v.Json.ValueKind == JsonValueKind.String ? v.Json.GetString()! : throw new VmmConfigException($"{where}: expected a string, got {v.Json.ValueKind}."));

    private static string? NullableStr(ConfigValue v, string where) => v.IsNull ? null : Str(v, where);

    private static int Int(ConfigValue v, string where)
    {
        if (v.Flag is { } f)
            return int.TryParse(f, NumberStyles.None, CultureInfo.InvariantCulture, out int n) ? n : throw new VmmConfigException($"{where}: '{f}' is not a whole number.");
        return v.Json.ValueKind == JsonValueKind.Number && v.Json.TryGetInt32(out int i) ? i : throw new VmmConfigException($"{where}: expected an integer, got {v.Json.ValueKind} {v.Json}.");
    }

    private static int? NullableInt(ConfigValue v, string where) => v.IsNull ? null : Int(v, where);

    private static bool Bool(ConfigValue v, string where)
    {
        if (v.Flag is { } f)
            return f switch { "on" or "true" or "1" => true, "off" or "false" or "0" => false, _ => throw new VmmConfigException($"{where}: '{f}' is not on or off.") };
        return v.Json.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.Json.GetBoolean() : throw new VmmConfigException($"{where}: expected true or false, got {v.Json.ValueKind}.");
    }

    private VmmConfig With(string key, ConfigValue v, string where)
    {
        var m = Machine;
        switch (key)
        {
            case "kernel": return this with { Machine = m with { KernelPath = NullableStr(v, where) } };
            case "initrd": return this with { Machine = m with { InitrdPath = NullableStr(v, where) } };
            case "cmdline": return this with { Machine = m with { Cmdline = Str(v, where) } };
            case "memory":
                ulong bytes = v.IsJsonNumber ? (ulong)Int(v, where) << 20 : ParseSize(Str(v, where), where);
                return this with { Machine = m with { MemoryBytes = bytes } };
            case "vcpus": return this with { Machine = m with { VcpuCount = Int(v, where) } };
            case "max_vcpus": return this with { Machine = m with { MaxVcpus = Int(v, where) } };
            case "serial":
                var (mode, path) = ParseSerial(Str(v, where), where);
                return this with { Serial = mode, SerialPath = path };
            case "control_socket": return this with { ControlSocket = NullableStr(v, where) };
            case "hugepages": return this with { Machine = m with { Memory = m.Memory with { HugePages = ParseHugePages(Str(v, where), where) } } };
            case "ksm": return this with { Machine = m with { Memory = m.Memory with { Ksm = Bool(v, where) } } };
            case "numa_node": return this with { Machine = m with { Memory = m.Memory with { NumaNode = NullableInt(v, where) } } };
            case "on_reset":
                return this with { Machine = m with { OnReset = Str(v, where) switch { "reboot" => ResetPolicy.Reboot, "stop" => ResetPolicy.Stop, var s => throw new VmmConfigException($"{where}: '{s}' is not reboot or stop.") } } };
            case "on_crash":
                return this with { OnCrashExplicit = true, OnCrash = Str(v, where) switch { "stay" => CrashPolicy.Stay, "exit" => CrashPolicy.Exit, var s => throw new VmmConfigException($"{where}: '{s}' is not stay or exit.") } };
            case "kvm_device": return this with { Machine = m with { KvmDevicePath = Str(v, where) } };
            case "firmware": return this with { Machine = m with { FirmwarePath = v.IsNull ? null : Str(v, where) is { Length: > 0 } f ? f : throw new VmmConfigException($"{where}: the firmware path is empty.") } };
            case "debugcon":
                string dc = Str(v, where);
                return this with { DebugCon = dc switch
                {
                    "none" => null,
                    "stderr" => "stderr",
                    _ when dc.StartsWith("file:", StringComparison.Ordinal) && dc.Length > 5 => dc[5..],
                    _ => throw new VmmConfigException($"{where}: '{dc}' is not a debug console mode (none, stderr or file:PATH)."),
                } };
            case "rng":
                // Sugar for a virtio-rng entry in "devices".
                var withoutRng = m.Devices.Where(d => d is not RngDeviceConfig).ToList();
                if (Bool(v, where)) withoutRng.Add(new RngDeviceConfig());
                return this with { Machine = m with { Devices = withoutRng } };
            case "devices":
                if (v.Flag is not null || v.Json.ValueKind != JsonValueKind.Array) throw new VmmConfigException($"{where}: expected an array of device objects (on the command line: --device TYPE,key=value).");
                var devices = new List<DeviceConfig>(m.Devices);
                int index = 0;
                foreach (var d in v.Json.EnumerateArray()) devices.Add(ParseDevice(DeviceOptionsFromJson(d, $"{where}[{index++}]")));
                return this with { Machine = m with { Devices = devices } };
            default:
                throw new VmmConfigException($"{where}: unknown key (known keys: {string.Join(", ", Keys)}).");
        }
    }

    private static DeviceOptions DeviceOptionsFromJson(JsonElement e, string where)
    {
        try { return DeviceOptions.FromJson(e, where); }
        catch (DeviceConfigException x) { throw new VmmConfigException(x.Message); }
    }

    private static DeviceConfig ParseDevice(DeviceOptions options)
    {
        try { return DeviceConfig.FromOptions(options); }
        catch (DeviceConfigException x) { throw new VmmConfigException(x.Message); }
    }

    /// <summary>Applies command-line flags on top of an optional --config file. Flags win over the file.</summary>
    public static VmmConfig FromArgs(IReadOnlyList<string> args)
    {
        var config = new VmmConfig();
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
            if (key == "config") config = FromJsonFile(value);
            else if (key == "device")
            {
                DeviceOptions options;
                try { options = DeviceOptions.FromFlag(value); }
                catch (DeviceConfigException x) { throw new VmmConfigException(x.Message); }
                deviceFlags.Add(ParseDevice(options));
            }
            else if (Array.IndexOf(Keys, key) < 0) throw new VmmConfigException($"unknown option {flag} (see --help).");
            else flags.Add((key, value));
        }
        foreach (var (key, value) in flags)
        {
            string where = $"--{key.Replace('_', '-')}";
            config = config.With(key, ConfigValue.FromFlag(value), where);
        }
        if (deviceFlags.Count > 0) config = config with { Machine = config.Machine with { Devices = [.. config.Machine.Devices, .. deviceFlags] } };
        try { config.Machine.Validate(); }
        catch (ArgumentOutOfRangeException e) { throw new VmmConfigException(e.Message.Split(" (Parameter")[0]); }
        if (config.Serial == SerialMode.File && string.IsNullOrEmpty(config.SerialPath)) throw new VmmConfigException("serial file mode needs a path (file:PATH).");
        return config;
    }

    public const string Usage = """
        Usage: kvmps-vmm [--config FILE] [options]
        Runs one KVM virtual machine in this process.

          --config FILE           JSON configuration (keys: kernel, initrd, cmdline, memory, vcpus, max_vcpus, serial,
                                  control_socket, hugepages, ksm, numa_node, rng, devices, on_reset, on_crash,
                                  kvm_device, firmware, debugcon);
                                  flags given after it override the file
          --kernel PATH           bzImage or ELF64 kernel (default: the built-in guest)
          --initrd PATH           initial ramdisk
          --cmdline TEXT          kernel command line
          --memory SIZE           guest memory, e.g. 256M, 1G (default 256M)
          --vcpus N               vCPUs at boot (default 1)
          --max-vcpus N           vCPUs reserved in the firmware tables for hot-add (default: --vcpus)
          --serial MODE           stdio | file:PATH | none (default stdio)
          --control-socket PATH   Unix socket for the JSON control protocol (docs/vmm.md)
          --hugepages MODE        none | thp | hugetlbfs
          --ksm on|off            mark guest memory mergeable for KSM
          --numa-node N           bind guest memory to host NUMA node N
          --device TYPE[,k=v...]  a PCI device, repeatable, in slot order (docs/devices.md); types: rng
          --rng on|off            shorthand for --device rng
          --firmware PATH|seabios boot firmware from the reset vector instead of a kernel (seabios:
                                  /usr/share/seabios/bios-256k.bin); it boots the first block device
          --debugcon MODE         none | stderr | file:PATH: the debug console port 0x402 (SeaBIOS's log)
          --on-reset reboot|stop  what a guest reset does (default reboot)
          --on-crash stay|exit    after a guest crash, stay up for inspection or exit 10
                                  (default: stay with a control socket, exit without)

        Exit status: 0 powered off/stopped, 2 usage, 4 KVM unavailable, 6 bad image, 8 host resource,
        10 guest crashed, 12 internal error; (v << 1) | 1 when the guest writes v to the debug-exit port 0xf4.
        """;
}

public sealed class VmmHelpRequested() : Exception("help");
public sealed class VmmVersionRequested() : Exception("version");
