using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;

namespace KvmPS.PowerShell.Internal;

/// <summary>
/// Shared by Add- and Remove-KvmPciPassthrough: which of the given devices a change takes (<see cref="Pick{T}"/>, one
/// loop for PCI addresses and vfio-user sockets alike), and the -HostName path (one kvmps vm attach-pci|detach-pci
/// there per device, confirmed once per VM).
/// </summary>
public abstract class KvmPassthroughCmdletBase : KvmRemoteVmCmdletBase
{
    /// <summary>
    /// The devices of <paramref name="given"/> (each read with <paramref name="parse"/>, once) that an add
    /// (<paramref name="attach"/>: those the VM does not have yet) or a remove (those it has) takes; each other one is an
    /// error naming it (VmDeviceAlreadyAttached, VmDeviceNotFound), and <paramref name="usable"/> may refuse one more
    /// (it writes its own error).
    /// </summary>
    internal List<T> Pick<T>(string name, IEnumerable<string> given, Func<string, T> parse, IReadOnlyCollection<T> current, bool attach,
        string property, Func<T, string> label, Func<string, T, bool>? usable = null)
    {
        var picked = new List<T>();
        foreach (var text in given)
        {
            var device = parse(text);
            if (picked.Contains(device))
                continue;
            if (current.Contains(device) == attach)
            {
                Exception error = attach
                    ? new VmDeviceAlreadyAttachedException(name, property, text, $"VM '{name}' already has {label(device)}")
                    : new VmDeviceNotFoundException(name, property, text, $"VM '{name}' has no {label(device)}");
                Output.WriteError(ErrorFor(error, text));
                continue;
            }
            if (usable is null || usable(text, device))
                picked.Add(device);
        }
        return picked;
    }

    /// <summary>Per record (both come by property name from the pipeline): at least one device.</summary>
    internal static void RequireDevices(string[] addresses, string[] sockets)
    {
        if (addresses.Length == 0 && sockets.Length == 0)
            throw KvmParameterException.Combination("Address", null, "give -Address (host PCI functions) or -VfioUserSocket (vfio-user servers), or both.");
    }

    internal static string PciLabel(PciAddress address) => $"PCI device {address}";

    internal static string VfioUserLabel(string socket) => $"vfio-user device '{socket}'";

    /// <summary>
    /// -HostName: each address and socket as one <c>kvmps vm VERB --json --host|--vfio-user DEVICE</c> there (that host
    /// checks them: its devices, its sockets), after one confirmation of <paramref name="action"/>; a device it refuses is
    /// an error naming the device, the others still go.
    /// </summary>
    internal void RemoteEach(RemoteHost remote, string name, string verb, string action, string[] addresses, string[] sockets, bool passThru, bool restartIfNeeded)
    {
        var devices = addresses.Distinct().Select(a => ("--host", a)).Concat(sockets.Distinct().Select(s => ("--vfio-user", s))).ToList();
        var list = string.Join(", ", devices.Select(d => d.Item2));
        if (!Output.ShouldProcess($"{name} on host {remote.Display}", $"{action} {list}"))
            return;
        foreach (var (option, device) in devices)
            ForTarget(device, () => RemoteChangeConfirmed(remote, name, verb, [option, device], [], restartIfNeeded));
        if (passThru)
            Output.WriteObject(remote.Vm(name));
    }
}
