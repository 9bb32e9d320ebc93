using KvmPS.Contract;
using KvmPS.Management.Definitions;
using KvmPS.Management.Vmm;

namespace KvmPS.Management.Lifecycle;

/// <summary>
/// CD/DVD drives, boot order and the display (docs/installing-from-iso.md). Drives are added and removed in the
/// definition (a running VM gets them at its next start); media go in and out of a running VM's drives at once
/// (<c>media.change</c>), refused with the VMM's own words when the guest has locked the tray.
/// </summary>
public sealed partial class VmManager
{
    /// <summary>Adds a DVD drive with <paramref name="isoPath"/> (null: empty); the ISO is checked (exists, ISO 9660, allowed folder).</summary>
    public ChangeResult AddDvdDrive(string name, string? isoPath) => Update(name, current =>
    {
        if (current.DvdDrives.Count >= DvdDriveDefinition.MaximumCount)
            throw new ManagementValidationException(name, "DvdDrives", $"the VM already has the most drives a VM may have ({DvdDriveDefinition.MaximumCount})");
        return Checked(current with { DvdDrives = new ValueList<DvdDriveDefinition>([.. current.DvdDrives, new DvdDriveDefinition(isoPath)]) });
    });

    /// <summary>
    /// Puts <paramref name="isoPath"/> into drive <paramref name="index"/>, or ejects its medium (null). On a running VM
    /// the VMM changes the medium first (the guest sees the change); its refusal (a locked tray) is thrown as
    /// <see cref="ManagementValidationException"/> with the VMM's message, and nothing is stored.
    /// </summary>
    public ChangeResult SetDvdMedia(string name, int index, string? isoPath, ChangeScope scope = ChangeScope.Current) => Update(name, current =>
    {
        RequireDrive(current, index);
        var drives = current.DvdDrives.ToArray();
        drives[index] = new DvdDriveDefinition(isoPath);
        return Checked(current with { DvdDrives = new ValueList<DvdDriveDefinition>(drives) });
    }, scope);

    /// <summary>
    /// Removes drive <paramref name="index"/>, or with null the VM's only drive: with several, which one is the
    /// caller's to say (Remove-KvmDvdDrive -ControllerLocation, kvmps vm dvd remove --drive).
    /// </summary>
    public ChangeResult RemoveDvdDrive(string name, int? index)
    {
        var drives = Store.Get(name).DvdDrives;
        if (index is null && drives.Count > 1)
            // "DvdDrive": the drive number, which the cmdlets show as -ControllerLocation (CmdletParameterNames).
            throw new ManagementValidationException(name, "DvdDrive", $"the VM has {drives.Count} DVD drives; say which one (0 to {drives.Count - 1})");
        return RemoveDvdDrive(name, index ?? 0);
    }

    /// <summary>Removes drive <paramref name="index"/> from the definition (a running VM keeps it until its next start).</summary>
    public ChangeResult RemoveDvdDrive(string name, int index) => Update(name, current =>
    {
        RequireDrive(current, index);
        var drives = current.DvdDrives.Where((_, i) => i != index);
        var after = current with { DvdDrives = new ValueList<DvdDriveDefinition>(drives) };
        // The DVD was the only boot device of a disk-less firmware VM: say so rather than fail validation obscurely.
        if (after.Boot is FirmwareBoot && after.Disks.Count == 0 && after.DvdDrives.Count == 0)
            throw new ManagementValidationException(name, "DvdDrives", "the VM boots firmware and has no disk: it needs its DVD drive (add a disk first)");
        return after;
    });

    /// <summary>
    /// Sets the boot order (null: unchanged; empty: the default, boot disk first) and the one-time boot device for the
    /// next start (null: unchanged; use <paramref name="clearBootOnce"/> to drop one).
    /// </summary>
    public ChangeResult SetFirmware(string name, IReadOnlyList<BootDevice>? bootOrder, BootDevice? bootOnce = null, bool clearBootOnce = false) => Update(name, current =>
    {
        if (current.Boot is not FirmwareBoot)
            throw new ManagementValidationException(name, "BootOrder", $"the VM boots {current.Boot} — a boot order applies to firmware boot only (Boot.FirmwarePath, e.g. 'seabios')");
        return current with
        {
            BootOrder = bootOrder is null ? current.BootOrder : new ValueList<BootDevice>(bootOrder),
            BootOnce = clearBootOnce ? null : bootOnce ?? current.BootOnce,
        };
    });

    /// <summary>Sets (or with null removes) the display; takes effect at the next start.</summary>
    public ChangeResult SetDisplay(string name, DisplaySettings? display) => Update(name, current => current with { Display = display });

    /// <summary>
    /// The VM's VNC listeners: from the running VMM (<c>display.get</c>) when it answers, else from the definition (what
    /// the next start gives). Null for a VM without a display.
    /// </summary>
    public VncEndpoints? GetVncEndpoints(string name)
    {
        var definition = Store.Get(name);
        if (definition.Display is not { } display)
            return null;
        if (Probe(name) is { Active: true, State: VmState.Running or VmState.Paused })
        {
            try
            {
                using var client = VmmClient.Connect(Store.SocketPath(name), Options.QueryTimeout, Options.QueryTimeout);
                var state = client.Send(new DisplayGetRequest(), ContractJsonContext.Default.DisplayStateReply);
                return new VncEndpoints(name, state.VncUnixPath ?? Store.VncSocketPath(name), state.VncTcp, state.VncPasswordRequired, Running: true)
                {
                    WidthPixels = state.WidthPixels,
                    HeightPixels = state.HeightPixels,
                    Clients = state.VncClients,
                };
            }
            catch (VmmRequestException) { /* a VMM without display.get: the definition says where it listens */ }
            catch (VmmNotRunningException) { }
        }
        return new VncEndpoints(name, Store.VncSocketPath(name), display.Tcp, display.PasswordFile is not null, Running: false);
    }

    /// <summary>The definition with its paths (allowed folders, ISO 9660) checked now, before a running VMM is asked.</summary>
    private VmDefinition Checked(VmDefinition definition)
    {
        definition.Validate();
        Store.CheckPaths(definition);
        return definition;
    }

    private static void RequireDrive(VmDefinition definition, int index)
    {
        if (index < 0 || index >= definition.DvdDrives.Count)
            throw new ManagementValidationException(definition.Name, "DvdDrives", definition.DvdDrives.Count == 0
                ? "the VM has no DVD drive (add one with Add-KvmDvdDrive / kvmps vm attach-iso)"
                : $"no drive {index}: the VM has drives 0 to {definition.DvdDrives.Count - 1}");
    }

    /// <summary>Sends <c>media.change</c> for every drive whose medium differs; the drives are the VMM's cdrom devices in slot order.</summary>
    private void ChangeMedia(VmmClient client, string name, VmDefinition before, VmDefinition after)
    {
        var drives = client.Describe().Devices.Where(d => d.Type == CdromDeviceSpec.TypeName).ToList();
        for (int i = 0; i < after.DvdDrives.Count; i++)
        {
            if (Equals(before.DvdDrives[i], after.DvdDrives[i]))
                continue;
            if (i >= drives.Count)
                throw new ManagementValidationException(name, $"DvdDrives[{i}]", $"the running VM has {drives.Count} DVD drive(s); this one comes at its next start");
            var path = after.DvdDrives[i].Path is { } iso ? Store.ResolveDiskPath(name, iso) : null;
            try
            {
                ChangeMedium(client, name, i, drives[i].Pci, path);
            }
            catch (VmmRequestException e)
            {
                // The VMM's words (e.g. the guest has locked the tray) are the reason; name the drive.
                throw new ManagementValidationException(name, $"DvdDrives[{i}]", $"the running VM refused to {(path is null ? "eject the medium" : $"insert '{path}'")}: {e.VmmMessage}");
            }
        }
    }

    /// <summary>
    /// One media.change, the ISO opened here and passed (docs/vmm.md "Passing open files"): a jailed VMM can neither see
    /// a pool's path nor read root's 0600 image. An unjailed VMM takes it the same way; one from before passed media is
    /// asked again by path. Ejecting passes nothing.
    /// </summary>
    private static void ChangeMedium(VmmClient client, string name, int drive, string pci, string? path)
    {
        IReadOnlyList<System.Runtime.InteropServices.SafeHandle> files;
        try
        {
            files = path is null ? [] : VmmPassedFiles.OpenIso(path);
        }
        catch (PassedFileException e)
        {
            throw new ManagementValidationException(name, $"DvdDrives[{drive}]", e.Message);
        }
        try
        {
            client.ChangeMedia(pci, path, files);
        }
        catch (VmmRequestException e) when (files.Count > 0 && e.Code == ControlErrorCodes.InvalidArgument
            && e.VmmMessage.Contains("unknown field 'passed_files'", StringComparison.Ordinal))
        {
            client.ChangeMedia(pci, path, []);
        }
        finally
        {
            VmmPassedFiles.Close(files);
        }
    }
}

/// <summary>Where a VM's VNC server listens (<see cref="VmManager.GetVncEndpoints"/>).</summary>
/// <param name="UnixPath">The Unix socket (always there with a display).</param>
/// <param name="Tcp">ADDR:PORT, or null without a TCP listener.</param>
/// <param name="Running">True: read from the running VMM; false: what the definition gives at the next start.</param>
public sealed record VncEndpoints(string VmName, string UnixPath, string? Tcp, bool PasswordRequired, bool Running)
{
    public int? WidthPixels { get; init; }
    public int? HeightPixels { get; init; }
    public int? Clients { get; init; }

    /// <summary>How to connect with a common viewer, e.g. <c>vncviewer /path/vnc.sock</c> (TigerVNC reads a socket path).</summary>
    /// <remarks>An array, not a read-only list: PowerShell indexes arrays as expected.</remarks>
    public string[] ViewerCommands =>
        Tcp is null ? [$"vncviewer {UnixPath}"] : [$"vncviewer {UnixPath}", $"vncviewer {Tcp}"];
}
