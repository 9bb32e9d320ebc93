namespace KvmPS.Management.Definitions;

/// <summary>How the VM boots. Exactly one of the three kinds below.</summary>
public abstract record BootSource;

/// <summary>The VMM boots its built-in default guest, optionally with a command line (e.g. <c>kvmps.run=info</c>, guest/README.md).</summary>
public sealed record DefaultGuestBoot(string? Cmdline = null) : BootSource
{
    public static DefaultGuestBoot Instance { get; } = new();

    public override string ToString() => string.IsNullOrEmpty(Cmdline) ? "Built-in guest" : $"Built-in guest ({Cmdline})";
}

/// <summary>Direct kernel boot (Linux boot protocol / ELF vmlinux) with optional initrd and command line.</summary>
public sealed record DirectKernelBoot(string KernelPath, string? InitrdPath = null, string? Cmdline = null) : BootSource
{
    /// <summary>The VMM places the command line in a 64 KiB area including its NUL terminator (docs/guest-layout.md).</summary>
    public const int MaximumCmdlineBytes = 65535;

    public override string ToString() =>
        $"Kernel {KernelPath}" + (InitrdPath is null ? "" : $", initrd {InitrdPath}") + (string.IsNullOrEmpty(Cmdline) ? "" : $" ({Cmdline})");
}

/// <summary>Firmware boot (e.g. SeaBIOS) from the disk at <see cref="BootDiskIndex"/> in <see cref="VmDefinition.Disks"/>.</summary>
public sealed record FirmwareBoot(string FirmwarePath, int BootDiskIndex = 0) : BootSource
{
    public override string ToString() => $"Firmware {FirmwarePath}, boot disk {BootDiskIndex}";
}
