namespace KvmPS.Engine.Tests.Linux;

/// <summary>
/// A fact that needs an installed distribution kernel (<c>/boot/vmlinuz-*</c>, e.g. Debian's linux-image-amd64) or a
/// kernel named by <c>KVMPS_LINUX_KERNEL</c>; it is skipped, with the reason, when there is none.
/// </summary>
public sealed class LinuxKernelFactAttribute : FactAttribute
{
    public const string KernelEnvironmentVariable = "KVMPS_LINUX_KERNEL";

    public LinuxKernelFactAttribute()
    {
        if (FindKernel() is not null) return;
        Skip = Environment.GetEnvironmentVariable(KernelEnvironmentVariable) is { Length: > 0 } named
            ? $"no Linux kernel: {KernelEnvironmentVariable} names {named}, which does not exist."
            : $"no Linux kernel: /boot/vmlinuz-* is absent and {KernelEnvironmentVariable} is unset " +
              "(install one with 'apt-get install -y linux-image-amd64 xz-utils').";
    }

    /// <summary>The kernel to boot: <c>$KVMPS_LINUX_KERNEL</c> if set, else the last /boot/vmlinuz-* by name.</summary>
    public static string? FindKernel()
    {
        if (Environment.GetEnvironmentVariable(KernelEnvironmentVariable) is { Length: > 0 } explicitPath)
            return File.Exists(explicitPath) ? explicitPath : null;
        var installed = VmlinuxExtractor.InstalledKernels();
        return installed.Count == 0 ? null : installed[^1];
    }
}
