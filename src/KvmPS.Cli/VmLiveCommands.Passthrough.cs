using KvmPS.Management.Definitions;
using KvmPS.Management.HostDevices;

namespace KvmPS.Cli;

/// <summary>
/// <c>kvmps vm attach-pci|detach-pci</c>: a host PCI function passed through with kernel VFIO (<c>--host</c>) or a
/// device served over vfio-user (<c>--vfio-user</c>), as Add-/Remove-KvmPciPassthrough: hot-plugged into a running VM
/// (VmManager.PassthroughHotplug.cs), else at the VM's next start.
/// </summary>
internal sealed partial class VmLiveCommands
{
    public int AttachPci(ParsedArgs options)
    {
        var (name, host, socket) = PassthroughTarget(options, "vm attach-pci");
        if (socket is not null)
            return Report(options, name, app.Manager.AddVfioUserDevices(name, [socket]));
        // The same check as Add-KvmPciPassthrough: the device exists and its IOMMU group can be given away.
        var readiness = PciPassthroughCheck.Check(app.PciDevices(), host!.Value);
        foreach (var warning in readiness.Warnings)
            app.Err.WriteLine("kvmps: warning: " + warning);
        return Report(options, name, app.Manager.AddPciPassthrough(name, [host.Value]));
    }

    public int DetachPci(ParsedArgs options)
    {
        var (name, host, socket) = PassthroughTarget(options, "vm detach-pci");
        return socket is not null
            ? Report(options, name, app.Manager.RemoveVfioUserDevices(name, [socket]))
            : Report(options, name, app.Manager.RemovePciPassthrough(name, [host!.Value]));
    }

    private static (string Name, PciAddress? Host, string? Socket) PassthroughTarget(ParsedArgs options, string topic)
    {
        var p = options.Positionals(topic, $"{topic} NAME --host DDDD:BB:DD.F|--vfio-user SOCKET", 1, 1);
        var (hostText, socket) = (options.Value("--host"), options.Value("--vfio-user"));
        if ((hostText is null) == (socket is null))
            throw new UsageException($"{topic}: give exactly one of --host (a host PCI function) and --vfio-user (a vfio-user server's socket)");
        if (socket is not null)
            return (p[0], null, Path.GetFullPath(socket));
        try { return (p[0], PciAddress.Parse(hostText!), null); }
        catch (ValueFormatException e) { throw new UsageException($"{topic}: --host: {e.Message}"); }
    }
}
