using System.Runtime.CompilerServices;

namespace KvmPS.Management.Tests;

/// <summary>
/// The tests of this assembly that are not about confinement give disks, kernels and firmware at made-up or temporary
/// paths (/boot/vmlinuz, /tmp/...): they run with every folder allowed (KVMPS_ALLOWED_PATHS=/), as an admin may
/// choose. Child processes (the CLI, helper processes) inherit it. Confinement tests pass their own AllowedPaths.
/// </summary>
internal static class AllowAllPathsForTests
{
    [ModuleInitializer]
    internal static void Initialize()
    {
        if (Environment.GetEnvironmentVariable("KVMPS_ALLOWED_PATHS") is null)
            Environment.SetEnvironmentVariable("KVMPS_ALLOWED_PATHS", "/");
    }
}
