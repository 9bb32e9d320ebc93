using System.Buffers;
using System.Globalization;
using System.Text.Json;
using KvmPS.Management.Definitions;

namespace KvmPS.Management.Vmm;

/// <summary>
/// Turns a <see cref="VmDefinition"/> into a kvmps-vmm JSON configuration (docs/vmm.md, "Configuration").
/// Call <see cref="VmmFeatureSupport.EnsureSupported"/> first: this maps only what the VMM supports.
/// </summary>
public static class VmmConfigBuilder
{
    /// <summary>kvmps-vmm's <c>on_crash</c>: we always keep a crashed VM up so its crash reason can be read.</summary>
    public const string OnCrash = "stay";

    /// <param name="controlSocketPath">Also passed on the command line (liveness checks read it there).</param>
    /// <param name="serialLogPath">Guest console output, appended.</param>
    /// <param name="resolveDiskPath">Turns a definition's disk path into the host path (the store's disk directory for relative ones).</param>
    public static byte[] Build(VmDefinition definition, string controlSocketPath, string serialLogPath, Func<string, string>? resolveDiskPath = null)
    {
        ArgumentNullException.ThrowIfNull(definition);
        resolveDiskPath ??= Path.GetFullPath;
        var output = new ArrayBufferWriter<byte>(1024);
        using (var w = new Utf8JsonWriter(output, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            switch (definition.Boot)
            {
                case DirectKernelBoot direct:
                    w.WriteString("kernel", Path.GetFullPath(direct.KernelPath));
                    if (direct.InitrdPath is not null)
                        w.WriteString("initrd", Path.GetFullPath(direct.InitrdPath));
                    if (direct.Cmdline is not null)
                        w.WriteString("cmdline", direct.Cmdline);
                    break;
                case DefaultGuestBoot builtIn:
                    // no kernel: the VMM boots its built-in guest
                    if (builtIn.Cmdline is not null) w.WriteString("cmdline", builtIn.Cmdline);
                    break;
                case FirmwareBoot firmware:
                    w.WriteString("firmware", Path.GetFullPath(firmware.FirmwarePath));
                    break;
                default:
                    throw new NotSupportedException($"VM '{definition.Name}': boot source {definition.Boot.GetType().Name} is not supported by kvmps-vmm");
            }
            // A string of digits is bytes (a JSON number would be MiB).
            w.WriteString("memory", definition.Memory.StartupBytes.ToString(CultureInfo.InvariantCulture));
            w.WriteNumber("vcpus", definition.Vcpus.Count);
            w.WriteNumber("max_vcpus", definition.Vcpus.Maximum);
            w.WriteString("hugepages", definition.MemoryBacking.HugePages switch
            {
                HugePagesMode.None => "none",
                HugePagesMode.Thp => "thp",
                HugePagesMode.Hugetlbfs => "hugetlbfs",
                var other => throw new NotSupportedException($"huge-page mode {other}"),
            });
            w.WriteBoolean("ksm", definition.MemoryBacking.KsmEnabled);
            if (definition.MemoryBacking.NumaNode is { } node)
                w.WriteNumber("numa_node", node);
            WriteDevices(w, definition, resolveDiskPath);
            w.WriteString("serial", "file:" + serialLogPath);
            w.WriteString("control_socket", controlSocketPath);
            w.WriteString("on_crash", OnCrash);
            w.WriteString("on_reset", "reboot");
            w.WriteEndObject();
        }
        return output.WrittenSpan.ToArray();
    }

    /// <summary>
    /// PCI devices in slot order: the disks (the firmware boot disk first, so SeaBIOS boots it), then the network
    /// adapters, then the balloon. Each disk gets the serial "NAME-dN" (as far as virtio-blk's 20 bytes allow) so a guest can tell them apart.
    /// </summary>
    private static void WriteDevices(Utf8JsonWriter w, VmDefinition definition, Func<string, string> resolveDiskPath)
    {
        var disks = definition.Disks.Select((disk, index) => (disk, index)).ToList();
        if (definition.Boot is FirmwareBoot { BootDiskIndex: var boot } && boot > 0 && boot < disks.Count)
        {
            var first = disks[boot];
            disks.RemoveAt(boot);
            disks.Insert(0, first);
        }
        w.WriteStartArray("devices");
        foreach (var (disk, index) in disks)
        {
            w.WriteStartObject();
            w.WriteString("type", "block");
            w.WriteString("path", resolveDiskPath(disk.Path));
            w.WriteString("format", disk.Format == DiskFormat.Qcow2 ? "qcow2" : "raw");
            w.WriteBoolean("read_only", disk.ReadOnly);
            string serial = $"{definition.Name}-d{index}";
            w.WriteString("serial", serial.Length <= 20 ? serial : serial[^20..]);
            w.WriteEndObject();
        }
        for (int i = 0; i < definition.NetworkAdapters.Count; i++)
        {
            var nic = definition.NetworkAdapters[i];
            w.WriteStartObject();
            w.WriteString("type", "net");
            w.WriteString("tap", nic.TapName ?? GeneratedTapName(definition.Name, i));
            if (nic.BridgeName is not null) w.WriteString("bridge", nic.BridgeName);
            w.WriteString("mac", nic.MacAddress.ToString());
            w.WriteEndObject();
        }
        if (definition.BalloonEnabled)
        {
            // deflate_on_oom: a guest short of memory may take pages back rather than fail; stats every 5 s for Invoke-KvmBalloon.
            w.WriteStartObject();
            w.WriteString("type", "balloon");
            w.WriteBoolean("deflate_on_oom", true);
            w.WriteNumber("stats_interval_s", 5);
            w.WriteEndObject();
        }
        w.WriteEndArray();
    }

    /// <summary>A stable tap name for an adapter that names only a bridge: "kv" + 8 hex digits of the VM name + "n" + index (≤ 15 bytes, IFNAMSIZ).</summary>
    public static string GeneratedTapName(string vmName, int index)
    {
        uint hash = 2166136261;
        foreach (char c in vmName) hash = (hash ^ c) * 16777619; // FNV-1a: stable across processes, unlike string.GetHashCode
        return string.Create(CultureInfo.InvariantCulture, $"kv{hash:x8}n{index}");
    }
}
