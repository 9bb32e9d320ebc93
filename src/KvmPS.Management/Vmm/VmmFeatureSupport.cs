using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;

namespace KvmPS.Management.Vmm;

/// <summary>
/// THE one place that decides which parts of a <see cref="VmDefinition"/> kvmps-vmm can run today.
/// Anything it cannot run must fail the start loudly rather than be dropped from the generated config.
/// Disks (virtio-blk), network adapters (virtio-net on tap), the balloon and firmware boot (SeaBIOS) run; when the
/// VMM gains another feature (VFIO), delete its check here and teach <see cref="VmmConfigBuilder"/> to emit it.
/// </summary>
public static class VmmFeatureSupport
{
    /// <summary>Descriptions of the unsupported features the definition uses (empty if it can be started).</summary>
    public static IReadOnlyList<string> FindUnsupported(VmDefinition definition)
    {
        ArgumentNullException.ThrowIfNull(definition);
        var unsupported = new List<string>();
        if (definition.PciPassthrough.Count > 0)
            unsupported.Add($"PCI passthrough (PciPassthrough: {string.Join(", ", definition.PciPassthrough)})");
        return unsupported;
    }

    /// <summary>Throws <see cref="VmFeatureNotSupportedException"/> naming the VM and every unsupported feature.</summary>
    public static void EnsureSupported(VmDefinition definition)
    {
        var unsupported = FindUnsupported(definition);
        if (unsupported.Count > 0)
            throw new VmFeatureNotSupportedException(definition.Name, unsupported);
    }
}
