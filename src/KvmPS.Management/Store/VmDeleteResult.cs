namespace KvmPS.Management.Store;

/// <param name="RetainedDisksDirectory">Where the disks went with <see cref="DiskRetention.Keep"/>; null otherwise.</param>
public sealed record VmDeleteResult(string VmName, string? RetainedDisksDirectory);
