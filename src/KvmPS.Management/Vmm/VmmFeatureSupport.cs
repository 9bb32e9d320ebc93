using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;

namespace KvmPS.Management.Vmm;

/// <summary>
/// THE one place that decides which parts of a <see cref="VmDefinition"/> kvmps-vmm can run today.
/// Anything it cannot run must fail the start loudly rather than be dropped from the generated config.
/// Everything a definition can say runs today (kernel VFIO and vfio-user passthrough included, docs/devices.md);
/// a feature a definition gains before the VMM can run it gets its check here, and leaves once
/// <see cref="VmmConfigBuilder"/> emits it.
/// </summary>
public static class VmmFeatureSupport
{
    /// <summary>Descriptions of the unsupported features the definition uses (empty if it can be started).</summary>
    public static IReadOnlyList<string> FindUnsupported(VmDefinition definition)
    {
        ArgumentNullException.ThrowIfNull(definition);
        var unsupported = new List<string>();
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
