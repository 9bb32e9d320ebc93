namespace KvmPS.Management.Definitions;

/// <summary>
/// A CD/DVD drive (kvmps-vmm's <c>cdrom</c> device: virtio-scsi with one CD-ROM LUN). <see cref="Path"/> is the ISO
/// image in it, null for an empty drive. Paths resolve as disk paths do (<see cref="DiskDefinition"/>): a relative one
/// in the VM's disk folder, <c>pool://&lt;pool&gt;/&lt;volume&gt;</c> in a storage pool, an absolute one inside the
/// store or an allowed folder. The image must be ISO 9660 (<see cref="Store.IsoImage"/>, checked with the paths).
/// </summary>
public sealed record DvdDriveDefinition(string? Path = null)
{
    /// <summary>Most drives a VM may have: each is a PCI slot of its own.</summary>
    public const int MaximumCount = 4;

    public static DvdDriveDefinition Empty { get; } = new();

    /// <summary>The pool of an ISO given by pool and volume, else null.</summary>
    public string? Pool => Path is not null && Pools.PoolVolumeReference.IsReference(Path) ? Pools.PoolVolumeReference.Parse(Path)?.Pool : null;

    /// <summary>The volume of an ISO given by pool and volume, else null.</summary>
    public string? Volume => Path is not null && Pools.PoolVolumeReference.IsReference(Path) ? Pools.PoolVolumeReference.Parse(Path)?.Volume : null;

    public override string ToString() => Path ?? "(empty)";
}

/// <summary>A kind of boot device, as Hyper-V's boot order names them.</summary>
public enum BootDevice
{
    /// <summary>The CD/DVD drives, in their order.</summary>
    Dvd,
    /// <summary>The disks: the firmware's boot disk first, then the others.</summary>
    Disk,
    /// <summary>The network adapters (iPXE), in their order.</summary>
    Network,
}

/// <summary>Boot order arithmetic shared by Set-KvmFirmware and kvmps vm boot-order.</summary>
public static class BootOrders
{
    /// <summary>
    /// <paramref name="current"/> with <paramref name="first"/> moved to the front (Hyper-V's -FirstBootDevice); an
    /// empty (default) order counts as the boot disk alone, so the disk stays after the new first device.
    /// </summary>
    public static IReadOnlyList<BootDevice> WithFirst(IReadOnlyList<BootDevice> current, BootDevice first) =>
        [first, .. (current.Count > 0 ? current : [BootDevice.Disk]).Where(d => d != first)];
}

/// <summary>
/// A display device (Bochs display, with a VGA BIOS) and the VMM's VNC server. The server always listens on a Unix
/// socket in the VM's folder (<c>vnc.sock</c>); <see cref="Vnc"/> <c>ADDR:PORT</c> adds a TCP listener, which
/// needs <see cref="PasswordFile"/> unless it is on loopback.
/// </summary>
/// <param name="Vnc"><c>unix</c>, or <c>ADDR:PORT</c> such as <c>127.0.0.1:5901</c>.</param>
/// <param name="PasswordFile">A file whose first line is the VNC password (VNC authentication).</param>
public sealed record DisplaySettings(string Vnc = DisplaySettings.UnixOnly, string? PasswordFile = null)
{
    public const string UnixOnly = "unix";

    /// <summary>The TCP listener (<c>ADDR:PORT</c>), null with <see cref="UnixOnly"/>.</summary>
    public string? Tcp => string.Equals(Vnc, UnixOnly, StringComparison.OrdinalIgnoreCase) ? null : Vnc;

    /// <summary>Null when <paramref name="vnc"/> is valid, else why not.</summary>
    public static string? VncProblem(string? vnc, string? passwordFile)
    {
        if (string.IsNullOrWhiteSpace(vnc))
            return "is required: 'unix' or ADDR:PORT (e.g. 127.0.0.1:5901)";
        if (string.Equals(vnc, UnixOnly, StringComparison.OrdinalIgnoreCase))
            return null;
        var colon = vnc.LastIndexOf(':');
        if (colon <= 0 || !System.Net.IPAddress.TryParse(vnc[..colon].Trim('[', ']'), out var address))
            return $"'{vnc}' is neither 'unix' nor ADDR:PORT with an IP address (e.g. 127.0.0.1:5901)";
        if (!int.TryParse(vnc[(colon + 1)..], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535)
            return $"'{vnc}' has no port between 1 and 65535";
        // Anyone who reaches the port gets the screen and the keyboard: beyond loopback only with a password.
        if (!System.Net.IPAddress.IsLoopback(address) && passwordFile is null)
            return $"'{vnc}' listens beyond this host; give PasswordFile (VNC authentication) or listen on 127.0.0.1";
        return null;
    }

    public override string ToString() => (Tcp is null ? "VNC on unix socket" : $"VNC on unix socket and {Tcp}") + (PasswordFile is null ? "" : " (password)");
}

/// <summary>virt-install's <c>--cdrom</c> flow (New-KvmVm -DvdPath, kvmps vm create --cdrom): what a VM installing from an ISO gets.</summary>
public static class IsoInstall
{
    /// <summary>
    /// <paramref name="definition"/> with a DVD drive holding <paramref name="isoPath"/>, SeaBIOS booting the DVD
    /// first and then the disks, and a display with VNC (on the VM's Unix socket unless <paramref name="vnc"/> says
    /// ADDR:PORT). A kernel boot is refused: an installer ISO is booted by firmware.
    /// </summary>
    public static VmDefinition Apply(VmDefinition definition, string isoPath, string? vnc = null)
    {
        ArgumentNullException.ThrowIfNull(definition);
        if (definition.Boot is DirectKernelBoot)
            throw new VmDefinitionException(definition.Name, "Boot", "an ISO is booted by firmware; give either a DVD to install from or a kernel, not both");
        return (definition with
        {
            Boot = definition.Boot as FirmwareBoot ?? new FirmwareBoot(Store.AllowedPaths.BuiltInFirmwareAlias),
            DvdDrives = new ValueList<DvdDriveDefinition>([.. definition.DvdDrives, new DvdDriveDefinition(isoPath)]),
            BootOrder = new ValueList<BootDevice>([BootDevice.Dvd, BootDevice.Disk]),
            Display = definition.Display ?? new DisplaySettings(vnc ?? DisplaySettings.UnixOnly),
        }).Validate();
    }
}
