using System.Management.Automation;
using System.Text.Json;
using KvmPS.Management.Remote;
using KvmPS.Management.SerialConsole;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>
/// Get-KvmConsoleLog: the VM's serial console output (serial.log), one string per line; with -HostName the log of a
/// VM on that host (<c>kvmps vm log --json</c> there), the same lines.
/// </summary>
[Cmdlet(VerbsCommon.Get, "KvmConsoleLog", DefaultParameterSetName = NameSet)]
[OutputType(typeof(string))]
public sealed class GetKvmConsoleLogCommand : KvmRemoteVmCmdletBase
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

    internal override void ProcessRemoteVm(RemoteHost remote, string name)
    {
        List<string> arguments = ["vm", "log", "--json"];
        if (Tail is { } tail)
            arguments.AddRange(["--tail", Number(tail)]);
        using var json = remote.Run([.. arguments, "--", name]);
        if (!json.RootElement.TryGetProperty("lines", out var lines) || lines.ValueKind != JsonValueKind.Array)
            throw new RemoteProtocolException(remote.Display, "'vm log --json' printed no 'lines' array");
        foreach (var line in lines.EnumerateArray())
            Output.WriteObject(line.GetString());
    }
}
