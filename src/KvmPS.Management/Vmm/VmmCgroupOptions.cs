using KvmPS.Interop;
using KvmPS.Management.Definitions;

namespace KvmPS.Management.Vmm;

/// <summary>
/// A VM's CPU and memory limits on its VMM's cgroup (docs/confinement.md, "cgroup limits"). At a start management
/// passes them as kvmps-vmm flags with <c>--cgroup kvmps/VM</c> (given by the jail already when it jails; added here
/// otherwise, so limits work jailed or not); the VMM writes them before it joins the cgroup. On a running VM
/// management writes the cgroup files itself: after the jail the VMM is no longer root and may not, and the files are
/// the kernel's interface, with nothing in the VMM to tell.
/// </summary>
public static class VmmCgroupOptions
{
    /// <summary>The cgroup a VM's VMM joins below the one it was started in.</summary>
    public static string CgroupPath(string vmName) => $"kvmps/{vmName}";

    /// <summary>The VMM's limit flags for <paramref name="definition"/> (none without limits), with <c>--cgroup</c> unless <paramref name="jailArguments"/> has it.</summary>
    public static string[] Arguments(VmDefinition definition, IReadOnlyList<string> jailArguments)
    {
        ArgumentNullException.ThrowIfNull(definition);
        if (!VmResourceLimits.Any(definition)) return [];
        var argv = new List<string>();
        if (!jailArguments.Contains("--cgroup"))
            argv.AddRange(["--cgroup", CgroupPath(definition.Name)]);
        argv.AddRange(VmResourceLimits.Arguments(VmResourceLimits.For(definition, definition.Vcpus.Count)));
        return [.. argv];
    }

    /// <summary>
    /// Removes the cgroup folders a VMM of <paramref name="vmName"/> started by this process would have (<c>kvmps/VM</c>
    /// below this process's cgroups), where empty: after the VMM exited, and when the VM is removed, so that no folder
    /// outlives its VM. A folder still holding a process (a VMM that did not exit) stays. Returns those removed.
    /// </summary>
    public static IReadOnlyList<string> RemoveFolders(string vmName, string procRoot = "/proc", string mount = "/sys/fs/cgroup") =>
        CgroupLimits.RemoveEmpty(CgroupLimits.FoldersBelowOwn(CgroupPath(vmName), "self", procRoot, mount));

    /// <summary>The running VMM <paramref name="pid"/>'s own cgroup folders (<c>…/kvmps/VM</c>); empty when it has none (started without limits or jail).</summary>
    public static IReadOnlyList<string> FoldersOf(int pid, string vmName) => CgroupLimits.FoldersOf(pid, "/" + CgroupPath(vmName));

    /// <summary>
    /// Writes <paramref name="definition"/>'s limits for <paramref name="vcpus"/> vCPUs into the running VMM's cgroup.
    /// </summary>
    /// <exception cref="CgroupLimitException">It has no cgroup of its own, or the kernel refused a value (named): a memory limit below what the VM uses now, say.</exception>
    public static void ApplyLive(int pid, VmDefinition definition, int vcpus)
    {
        ArgumentNullException.ThrowIfNull(definition);
        var folders = FoldersOf(pid, definition.Name);
        if (folders.Count == 0)
            throw new CgroupLimitException($"the running VMM (pid {pid}) has no cgroup {CgroupPath(definition.Name)} of its own (it was started without limits and unjailed)");
        VmResourceLimits.For(definition, vcpus).WriteTo(folders);
    }
}
