namespace KvmPS.Management.HostDevices;

/// <summary>
/// Whether the host itself is using a PCI function, as far as sysfs can tell: a network interface of the function
/// that is up (<c>net/*/operstate</c>), a block device of it that another device is stacked on (<c>holders/</c>:
/// LVM, RAID, dm-crypt) or the boot display (<c>boot_vga</c>) with its driver bound. Taking such a device from its
/// driver would cut the host's network, storage or console.
/// </summary>
public static class PciHostUse
{
    /// <summary>Throws <see cref="PciPassthroughException"/> naming the device and the use when the host uses it.</summary>
    public static void Check(PciHostDevices host, PciHostDevice device)
    {
        if (Describe(host, device) is { } use)
            throw new PciPassthroughException(device.Address, $"the host is using it: {use}.");
    }

    /// <summary>The host's use of <paramref name="device"/> in words, or null when none is detectable.</summary>
    public static string? Describe(PciHostDevices host, PciHostDevice device)
    {
        if (device.Driver is null || device.IsVfioBound)
            return null;
        var directory = Path.Combine(host.DevicesDirectory, device.Address.ToString());
        var net = Path.Combine(directory, "net");
        if (Directory.Exists(net))
            foreach (var nic in Directory.EnumerateDirectories(net).Order(StringComparer.Ordinal))
                if (ReadText(Path.Combine(nic, "operstate")) is "up" or "unknown" or "dormant")
                {
                    var name = Path.GetFileName(nic);
                    return $"network interface {name} (driver {device.Driver}) is up; take it down first ('ip link set dev {name} down')";
                }
        foreach (var holders in BlockHolders(directory))
            return $"block device {holders.Block} (driver {device.Driver}) holds {holders.Holder}; stop that first";
        if (ReadText(Path.Combine(directory, "boot_vga")) == "1")
            return $"it is the boot display, driven by {device.Driver}";
        return null;
    }

    private static IEnumerable<(string Block, string Holder)> BlockHolders(string directory)
    {
        List<string> holderDirectories;
        try
        {
            // A block device (or partition) sits a few levels below its controller (nvme/nvme0/nvme0n1/nvme0n1p1,
            // host0/target0:0:0/0:0:0:0/block/sda) and has a holders/ directory; symlinks are not followed.
            holderDirectories = Directory.EnumerateDirectories(directory, "holders", new EnumerationOptions
            {
                RecurseSubdirectories = true, MaxRecursionDepth = 7, AttributesToSkip = FileAttributes.ReparsePoint,
                IgnoreInaccessible = true,
            }).ToList();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            yield break;
        }
        foreach (var holders in holderDirectories)
        {
            var holder = Directory.EnumerateFileSystemEntries(holders).Select(Path.GetFileName).FirstOrDefault();
            if (holder is not null)
                yield return (Path.GetFileName(Path.GetDirectoryName(holders))!, holder);
        }
    }

    private static string? ReadText(string path)
    {
        try { return File.ReadAllText(path).Trim(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }
}
