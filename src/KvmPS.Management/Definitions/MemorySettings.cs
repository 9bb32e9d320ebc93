namespace KvmPS.Management.Definitions;

/// <summary>
/// Guest RAM. The VM boots with <see cref="StartupBytes"/>; the balloon may move it between
/// <see cref="MinimumBytes"/> and <see cref="MaximumBytes"/> (hotplug headroom).
/// </summary>
public sealed record MemorySettings(long StartupBytes, long MinimumBytes, long MaximumBytes)
{
    /// <summary>Fixed-size memory: minimum = startup = maximum.</summary>
    public static MemorySettings Fixed(long bytes) => new(bytes, bytes, bytes);

    public override string ToString() =>
        MinimumBytes == StartupBytes && MaximumBytes == StartupBytes
            ? DisplayText.Bytes(StartupBytes)
            : $"{DisplayText.Bytes(StartupBytes)} ({DisplayText.Bytes(MinimumBytes)} to {DisplayText.Bytes(MaximumBytes)})";
}
