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
    public static byte[] Build(VmDefinition definition, string controlSocketPath, string serialLogPath)
    {
        ArgumentNullException.ThrowIfNull(definition);
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
                case DefaultGuestBoot:
                    break; // no kernel: the VMM boots its built-in guest
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
            w.WriteString("serial", "file:" + serialLogPath);
            w.WriteString("control_socket", controlSocketPath);
            w.WriteString("on_crash", OnCrash);
            w.WriteString("on_reset", "reboot");
            w.WriteEndObject();
        }
        return output.WrittenSpan.ToArray();
    }
}
