using System.Management.Automation;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Get-KvmFirmware: how the VM boots, its boot order and the one-time boot device of its next start.</summary>
[Cmdlet(VerbsCommon.Get, "KvmFirmware", DefaultParameterSetName = NameSet)]
[OutputType(typeof(KvmFirmware))]
public sealed class GetKvmFirmwareCommand : KvmVmCmdletBase
{
    protected override void ProcessVm(string name) => Output.WriteObject(KvmFirmware.From(Manager.Store.Get(name)));
}
