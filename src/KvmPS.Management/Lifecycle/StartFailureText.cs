using KvmPS.Management.Store;

namespace KvmPS.Management.Lifecycle;

/// <summary>
/// Why a VM did not start, in the words of the VMM's own error line rather than the generic meaning of its exit
/// status ("the kernel, initrd, firmware or a disk image cannot be used" says nothing about which, or why). A disk
/// refused because another process holds its lock also names the VM of this store that uses that disk, if one runs.
/// </summary>
internal static class StartFailureText
{
    private const string ErrorPrefix = "kvmps-vmm: error: ";

    /// <summary>The VMM's last <c>kvmps-vmm: error:</c> line in its log tail, without the prefix; null if it printed none.</summary>
    public static string? VmmError(string logTail)
    {
        string? found = null;
        foreach (var line in logTail.Split('\n'))
        {
            var at = line.IndexOf(ErrorPrefix, StringComparison.Ordinal);
            if (at >= 0)
                found = line[(at + ErrorPrefix.Length)..].Trim();
        }
        return found;
    }

    /// <summary>
    /// The sentence after "VM 'x' failed to start: ": the VMM's error with the exit status, or the generic meaning when the
    /// VMM said nothing.
    /// </summary>
    public static string Explain(VmStore store, string vmName, int exitCode, string logTail)
    {
        var error = VmmError(logTail);
        if (error is null)
            return $"kvmps-vmm exited with status {exitCode} ({VmManager.ExitMeaning(exitCode)})";
        var holder = error.Contains("lock", StringComparison.OrdinalIgnoreCase) ? LockHolder(store, vmName, error) : null;
        return error.TrimEnd('.') + (holder is null ? "" : $"; it is a disk of VM '{holder}', which is running") + $" (kvmps-vmm exit status {exitCode})";
    }

    /// <summary>Another active VM of the store with a disk whose path the error names.</summary>
    private static string? LockHolder(VmStore store, string vmName, string error)
    {
        foreach (var other in store.ListNames())
        {
            if (other == vmName)
                continue;
            try
            {
                var definition = store.TryGet(other);
                if (definition is null)
                    continue;
                foreach (var disk in definition.Disks)
                    if (error.Contains(store.ResolveDiskPath(other, disk.Path), StringComparison.Ordinal) &&
                        VmRuntimeProbe.ReadPidFile(store.PidPath(other)) is { } pid && VmRuntimeProbe.IsVmmProcess(pid, store.SocketPath(other)))
                        return other;
            }
            catch (Exception e) when (e is VmStoreException or IOException or UnauthorizedAccessException)
            {
                // An unreadable neighbour does not change why this VM failed.
            }
        }
        return null;
    }
}
