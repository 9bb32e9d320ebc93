namespace KvmPS.Management.Definitions;

/// <summary>Host-side backing of guest RAM.</summary>
/// <param name="HugePages">Page size strategy.</param>
/// <param name="KsmEnabled">Mark guest RAM mergeable (<c>MADV_MERGEABLE</c>) for kernel same-page merging.</param>
/// <param name="NumaNode">Bind guest RAM to this host NUMA node; null = no binding.</param>
public sealed record MemoryBackingSettings(HugePagesMode HugePages = HugePagesMode.None, bool KsmEnabled = false, int? NumaNode = null)
{
    public static MemoryBackingSettings Default { get; } = new();
}
