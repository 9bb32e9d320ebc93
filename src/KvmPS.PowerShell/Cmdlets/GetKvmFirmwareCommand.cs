using System.Management.Automation;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Get-KvmFirmware: how the VM boots, its boot order and the one-time boot device of its next start.</summary>
[Cmdlet(VerbsCommon.Get, "KvmFirmware", DefaultParameterSetName = NameSet)]
[OutputType(typeof(KvmFirmware))]
public sealed class GetKvmFirmwareCommand : KvmRemoteVmCmdletBase
{
    protected override void ProcessVm(string name) => Output.WriteObject(KvmFirmware.From(Manager.Store.Get(name)));

    /// <summary>-HostName: kvmps vm firmware there; a KvmPS.RemoteFirmware object (VmName, Boot, BootOrder, FirstBootDevice, BootOnce, HostName).</summary>
    internal override void ProcessRemoteVm(RemoteHost remote, string name) => WriteRemote(this, remote, name);

    /// <summary>The firmware settings of a VM there (also Set-KvmFirmware -PassThru -HostName).</summary>
    internal static void WriteRemote(KvmCmdletBase cmdlet, RemoteHost remote, string name)
    {
        foreach (var firmware in remote.Objects(["vm", "firmware", "--json", "--", name], RemoteObject.Firmware))
            cmdlet.Output.WriteObject(firmware);
    }
}
