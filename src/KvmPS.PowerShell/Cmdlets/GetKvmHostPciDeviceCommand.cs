using System.Management.Automation;
using KvmPS.Management.HostDevices;
using KvmPS.Management.Selection;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Get-KvmHostPciDevice: the host's PCI functions from sysfs, with what passthrough needs to know.</summary>
[Cmdlet(VerbsCommon.Get, "KvmHostPciDevice", DefaultParameterSetName = AddressSet)]
[OutputType(typeof(PciHostDevice))]
public sealed class GetKvmHostPciDeviceCommand : KvmRemoteCmdletBase
{
    internal const string AddressSet = "Address";

    /// <summary>PCI addresses (DDDD:BB:DD.F) or wildcards; all devices without it.</summary>
    [Parameter(ParameterSetName = AddressSet, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [SupportsWildcards]
    [Alias("PciAddress")]
    public string[]? Address { get; set; }

    /// <summary>Only devices bound to this driver (wildcards allowed), e.g. vfio-pci.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    [SupportsWildcards]
    public string? Driver { get; set; }

    protected override void ProcessLocal()
    {
        var devices = new PciHostDevices().List();
        var driver = DriverPattern();
        var byAddress = devices.ToDictionary(d => d.Address.ToString(), d => d, StringComparer.OrdinalIgnoreCase);
        var selection = VmSelector.Select(devices.Select(d => d.Address.ToString()).ToList(), Address);
        foreach (var missing in selection.NotFound)
            Output.WriteError(new KvmError(new ItemNotFoundException($"This host has no PCI device '{missing}'"),
                KvmErrorIds.HostDeviceNotFound, ErrorCategory.ObjectNotFound, missing));
        foreach (var address in selection.Names)
        {
            var device = byAddress[address];
            if (driver is null || (device.Driver is not null && driver.IsMatch(device.Driver)))
                Output.WriteObject(device);
        }
    }

    private VmNamePattern? DriverPattern() => Driver is null ? null : new VmNamePattern(Driver);

    /// <summary>
    /// -HostName: kvmps host pci list there, selected here as locally (-Address, -Driver); KvmPS.RemotePciHostDevice
    /// objects (the JSON fields: Address, VendorDevice, Class, Driver, IommuGroup, SriovTotalVfs, SriovNumVfs, PhysicalFunction; and HostName).
    /// </summary>
    internal override void ProcessRemote(RemoteHost remote)
    {
        var driver = DriverPattern();
        var selected = remote.Select(Output, ["host", "pci", "list", "--json"], RemoteObject.PciHostDevice, Address, "PCI device",
            KvmErrorIds.HostDeviceNotFound, keyProperty: "Address");
        foreach (var device in selected)
            if (driver is null || (device.Properties["Driver"].Value is string name && driver.IsMatch(name)))
                Output.WriteObject(device);
    }
}
