using KvmPS.PowerShell.Completers;
using System.Management.Automation;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Remove-KvmNetworkAdapter: removes network adapters, identified by MAC address (a running guest releases them first).</summary>
[Cmdlet(VerbsCommon.Remove, "KvmNetworkAdapter", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmVm))]
public sealed class RemoveKvmNetworkAdapterCommand : KvmRemoteVmCmdletBase
{
    [Parameter(Mandatory = true, Position = 1)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(VmDeviceCompleter))]
    public string[] MacAddress { get; set; } = Array.Empty<string>();

    /// <summary>On a running VM: how long to wait for the guest to release the device (default 30 s).</summary>
    [Parameter]
    [ValidateRange(0, LiveChangeParameters.MaximumTimeoutSec)]
    public int? TimeoutSec { get; set; }

    /// <summary>Change the running VM now (and store it); refused when the VM is not running or cannot take it live.</summary>
    [Parameter]
    public SwitchParameter Live { get; set; }

    /// <summary>Store the change for the next start only: a running VM keeps its devices until it is restarted.</summary>
    [Parameter]
    public SwitchParameter Config { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void Begin() => LiveChangeParameters.Scope(Live.IsPresent, Config.IsPresent);

    protected override void ProcessVm(string name)
    {
        var definition = Manager.GetDefinition(name);
        var remove = new HashSet<MacAddress>();
        foreach (var text in MacAddress)
        {
            var mac = KvmParameterException.Parse(nameof(MacAddress), text, Management.Definitions.MacAddress.Parse);
            if (definition.NetworkAdapters.Any(a => a.MacAddress == mac))
                remove.Add(mac);
            else
                Output.WriteError(ErrorFor(new VmDeviceNotFoundException(name, "NetworkAdapters.MacAddress", text, $"VM '{name}' has no network adapter with MAC address {mac}"), text));
        }
        var scope = LiveChangeParameters.Scope(Live.IsPresent, Config.IsPresent);
        if (remove.Count == 0 || !Output.ShouldProcess(name, $"Remove network {DisplayText.Count(remove.Count, "adapter")} {string.Join(", ", remove)}{LiveChangeParameters.Describe(scope)}"))
            return;
        ReportChange(Manager.RemoveNetworkAdapters(name, remove, scope, TimeoutSec is { } seconds ? TimeSpan.FromSeconds(seconds) : null), restartIfNeeded: false);
        if (PassThru.IsPresent)
            Output.WriteObject(new KvmVm(Manager.Get(name)));
    }

    /// <summary>-HostName: kvmps vm detach-nic there, once per MAC address (each its own change).</summary>
    internal override void ProcessRemoteVm(RemoteHost remote, string name)
    {
        var options = new List<string>(LiveChangeParameters.Arguments(Live.IsPresent, Config.IsPresent));
        if (TimeoutSec is { } seconds)
            options.AddRange(["--timeout", Number(seconds)]);
        var scope = LiveChangeParameters.Describe(LiveChangeParameters.Scope(Live.IsPresent, Config.IsPresent));
        foreach (var text in MacAddress)
        {
            var mac = KvmParameterException.Parse(nameof(MacAddress), text, Management.Definitions.MacAddress.Parse).ToString();
            ForTarget(text, () => RemoteChange(remote, name, $"Remove network adapter {mac}{scope}", "detach-nic", options, [mac], passThru: false));
        }
        if (PassThru.IsPresent)
            Output.WriteObject(remote.Vm(name));
    }
}
