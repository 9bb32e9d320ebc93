using System.Management.Automation;
using System.Text.Json;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Remote;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>
/// Get-KvmVmScreenshot: saves the running VM's screen as PNG, read through its VNC server. With -HostName the VM is
/// on that host: <c>kvmps vm screenshot --json NAME -</c> there answers with the PNG (base64), saved here to -Path.
/// </summary>
[Cmdlet(VerbsCommon.Get, "KvmVmScreenshot", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
[OutputType(typeof(VmScreenshot))]
public sealed class GetKvmVmScreenshotCommand : KvmRemoteVmCmdletBase
{
    internal const string RemoteTypeName = "KvmPS.RemoteVmScreenshot";

    /// <summary>The PNG file to write (replaced if it exists); a path here also with -HostName.</summary>
    [Parameter(Mandatory = true, Position = 1)]
    [ValidateNotNullOrEmpty]
    public string Path { get; set; } = "";

    /// <summary>How long to wait for the picture (default 10 s).</summary>
    [Parameter]
    [ValidateRange(1, 600)]
    public int TimeoutSec { get; set; } = 10;

    /// <summary>Output the screenshot's details (size, file, socket).</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    private bool _done;

    protected override void ProcessVm(string name)
    {
        var path = OneFile(name);
        if (!Output.ShouldProcess(name, $"Write a screenshot to '{path}'"))
            return;
        var shot = Manager.Screenshot(name, path, TimeSpan.FromSeconds(TimeoutSec));
        if (PassThru.IsPresent)
            Output.WriteObject(shot);
    }

    internal override void ProcessRemoteVm(RemoteHost remote, string name)
    {
        var path = OneFile(name);
        if (!Output.ShouldProcess($"{name} on host {remote.Display}", $"Write a screenshot to '{path}'"))
            return;
        using var json = remote.Run(["vm", "screenshot", "--json", "--timeout", Number(TimeoutSec), "--", name, "-"]);
        if (!json.RootElement.TryGetProperty("pngBase64", out var png) || !png.TryGetBytesFromBase64(out var bytes))
            throw new RemoteProtocolException(remote.Display, "'vm screenshot --json NAME -' printed no 'pngBase64' picture");
        // The file is written whole or not at all: a failed write must not leave half a picture under the name.
        var temporary = path + ".partial";
        try
        {
            File.WriteAllBytes(temporary, bytes);
            File.Move(temporary, path, overwrite: true);
        }
        catch
        {
            File.Delete(temporary);
            throw;
        }
        if (!PassThru.IsPresent)
            return;
        var result = RemoteObject.From(json.RootElement, remote, RemoteTypeName);
        result.Properties.Remove("PngBase64");
        result.Properties.Remove("Name");
        result.Properties.Remove("Path");
        result.Properties.Add(new PSNoteProperty("VmName", name));
        result.Properties.Add(new PSNoteProperty("Path", path));
        Output.WriteObject(result);
    }

    /// <summary>One file per call: a second VM would overwrite the first one's picture. Returns -Path resolved here.</summary>
    private string OneFile(string name)
    {
        if (_done)
            throw new VmStateException(name, VmState.Unknown, "Get-KvmVmScreenshot writes one file; select a single VM (or call it once per VM with its own -Path)");
        _done = true;
        return ResolvePath(Path);
    }
}
