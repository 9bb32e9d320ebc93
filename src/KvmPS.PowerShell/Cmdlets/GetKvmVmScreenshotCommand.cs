using System.Management.Automation;
using KvmPS.Management.Lifecycle;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Get-KvmVmScreenshot: saves the running VM's screen as PNG, read through its VNC server.</summary>
[Cmdlet(VerbsCommon.Get, "KvmVmScreenshot", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
[OutputType(typeof(VmScreenshot))]
public sealed class GetKvmVmScreenshotCommand : KvmVmCmdletBase
{
    /// <summary>The PNG file to write (replaced if it exists).</summary>
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
        // One file: a second VM would overwrite the first one's picture.
        if (_done)
            throw new VmStateException(name, VmState.Unknown, "Get-KvmVmScreenshot writes one file; select a single VM (or call it once per VM with its own -Path)");
        _done = true;
        var path = ResolvePath(Path);
        if (!Output.ShouldProcess(name, $"Write a screenshot to '{path}'"))
            return;
        var shot = Manager.Screenshot(name, path, TimeSpan.FromSeconds(TimeoutSec));
        if (PassThru.IsPresent)
            Output.WriteObject(shot);
    }
}
