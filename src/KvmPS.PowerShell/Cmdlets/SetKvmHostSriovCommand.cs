using System.Management.Automation;
using KvmPS.Management.Definitions;
using KvmPS.Management.HostDevices;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Set-KvmHostSriov: enables N virtual functions on an SR-IOV physical function (sriov_numvfs).</summary>
[Cmdlet(VerbsCommon.Set, "KvmHostSriov", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(PciHostDevice))]
public sealed class SetKvmHostSriovCommand : KvmRemoteCmdletBase
{
    /// <summary>The physical function's PCI address (DDDD:BB:DD.F).</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [Alias("Address", "PciAddress")]
    public string Device { get; set; } = "";

    /// <summary>How many virtual functions to enable; 0 disables SR-IOV. At most the device's SriovTotalVfs.</summary>
    [Parameter(Mandatory = true, Position = 1)]
    [ValidateRange(0, 65535)]
    public int VfCount { get; set; }

    /// <summary>Writes the physical function (with its new VF count) and its virtual functions to the pipeline.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessLocal()
    {
        var address = KvmParameterException.Parse(nameof(Device), Device, PciAddress.Parse);
        var devices = new PciHostDevices();
        var sriov = new HostSriov(devices, SysfsWriter.Instance);
        if (devices.TryRead(address) is null)
        {
            Output.WriteError(new KvmError(new ItemNotFoundException($"This host has no PCI device '{address}'"),
                KvmErrorIds.HostDeviceNotFound, ErrorCategory.ObjectNotFound, Device));
            return;
        }
        PciHostDevice before;
        try { before = sriov.Check(address, VfCount); }
        catch (HostSriovException e)
        {
            Output.WriteError(new KvmError(e, KvmErrorIds.HostSriovRefused, ErrorCategory.InvalidArgument, Device));
            return;
        }
        var current = before.SriovNumVfs ?? 0;
        // Changing a non-zero count removes every VF first (the kernel goes through 0), so the prompt says so.
        var action = current == VfCount
            ? $"Keep {VfCount} SR-IOV virtual functions"
            : current == 0 ? $"Enable {VfCount} SR-IOV virtual functions (of {before.SriovTotalVfs})"
            : $"Change SR-IOV virtual functions from {current} to {VfCount} (removes the {current} existing ones)";
        if (current != VfCount && !Output.ShouldProcess($"{address} ({before.ClassName})", action))
            return;
        try { sriov.SetVfCount(address, VfCount); }
        catch (HostSriovException e)
        {
            Output.WriteError(new KvmError(e, KvmErrorIds.HostSriovFailed, ErrorCategory.WriteError, Device));
            return;
        }
        if (!PassThru.IsPresent)
            return;
        Output.WriteObject(devices.TryRead(address));
        foreach (var vf in sriov.VirtualFunctions(address))
            if (devices.TryRead(vf.Address) is { } device)
                Output.WriteObject(device);
    }

    /// <summary>
    /// -HostName: kvmps host sriov set there (that host checks the device and the count and refuses with its reason);
    /// -PassThru: the physical function and its virtual functions from kvmps host pci list there.
    /// </summary>
    internal override void ProcessRemote(RemoteHost remote)
    {
        var address = KvmParameterException.Parse(nameof(Device), Device, PciAddress.Parse).ToString();
        if (!Output.ShouldProcess($"{address} on host {remote.Display}", $"Set the SR-IOV virtual functions to {VfCount} (a changed count removes the existing ones)"))
            return;
        using (remote.Run(["host", "sriov", "set", "--json", "--", address, VfCount.ToString(System.Globalization.CultureInfo.InvariantCulture)])) { }
        if (!PassThru.IsPresent)
            return;
        foreach (var device in remote.Objects(["host", "pci", "list", "--json"], RemoteObject.PciHostDevice))
            if (Equals(device.Properties["Address"].Value, address) || Equals(device.Properties["PhysicalFunction"].Value, address))
                Output.WriteObject(device);
    }
}
