using System.Management.Automation;
using KvmPS.Management.SerialConsole;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Get-KvmConsoleLog: the VM's serial console output (serial.log), one string per line.</summary>
[Cmdlet(VerbsCommon.Get, "KvmConsoleLog", DefaultParameterSetName = NameSet)]
[OutputType(typeof(string))]
public sealed class GetKvmConsoleLogCommand : KvmVmCmdletBase
{
    /// <summary>Only the last N lines.</summary>
    [Parameter]
    [ValidateRange(0, int.MaxValue)]
    [Alias("Last")]
    public int? Tail { get; set; }

    protected override void ProcessVm(string name)
    {
        foreach (var line in SerialLogReader.ReadLines(Manager.SerialLogPath(name), Tail))
            Output.WriteObject(line);
    }
}
