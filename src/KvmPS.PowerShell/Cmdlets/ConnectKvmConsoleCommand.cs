using System.Management.Automation;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.SerialConsole;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>
/// Connect-KvmConsole: attaches this terminal to the VM's serial console until Ctrl-] is typed. With -HostName the VM
/// is on that host: <c>ssh -t</c> runs <c>kvmps vm console NAME</c> there with this terminal (its keys, Ctrl-] too).
/// </summary>
[Cmdlet(VerbsCommunications.Connect, "KvmConsole", DefaultParameterSetName = NameSet)]
[OutputType(typeof(KvmVm), typeof(KvmRemoteVm), typeof(VncEndpoints))]
public sealed class ConnectKvmConsoleCommand : KvmRemoteVmCmdletBase
{
    /// <summary>Do not replay the last 64 KiB of console output first.</summary>
    [Parameter]
    public SwitchParameter NoReplay { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    /// <summary>
    /// The graphical console instead: outputs where the VM's VNC server listens and prints how to connect a viewer
    /// (a VNC viewer cannot run inside the terminal).
    /// </summary>
    [Parameter]
    public SwitchParameter Graphics { get; set; }

    private bool _connected;

    protected override void ProcessVm(string name)
    {
        if (Graphics.IsPresent)
        {
            var endpoints = Manager.GetVncEndpoints(name)
                ?? throw new VmStateException(name, VmState.Unknown, $"VM '{name}' has no display (Display = @{{ Vnc = 'unix' }} in its definition; New-KvmVm -DvdPath gives one)");
            if (!endpoints.Running)
                Output.WriteWarning($"VM '{name}' is not running; its VNC server listens there once it is started.");
            Host.UI.WriteLine($"Connect a VNC viewer to VM '{name}':");
            foreach (var command in endpoints.ViewerCommands)
                Host.UI.WriteLine("  " + command);
            Output.WriteObject(endpoints);
            return;
        }
        if (_connected)
            throw new VmStateException(name, VmState.Unknown, "Connect-KvmConsole attaches to one VM at a time; select a single VM");
        _connected = true;
        using (var session = ConsoleSession.Open(Manager, name, replay: !NoReplay.IsPresent, logCommand: $"Get-KvmConsoleLog -Name {name}"))
        {
            // Checked after Open, so a missing or stopped VM is reported as such first.
            if (System.Console.IsInputRedirected)
                throw new InteractiveTerminalRequiredException(name);
            Host.UI.WriteLine(session.ConnectedMessage);
            ConsoleSessionEnd end;
            using (var keyboard = new KeyboardConsoleInput())
                end = session.Run(System.Console.OpenStandardOutput(), keyboard);
            Host.UI.WriteLine();
            Host.UI.WriteLine(session.EndMessage(end));
        }
        if (PassThru.IsPresent)
            Output.WriteObject(new KvmVm(Manager.Get(name)));
    }

    internal override void ProcessRemoteVm(RemoteHost remote, string name)
    {
        if (Graphics.IsPresent)
            throw KvmParameterException.Combination("Graphics", name, $"-Graphics shows this host's VNC endpoints; for a VM on host '{remote.Display}' run 'kvmps --host {remote.Display} vm vnc {name}' and forward its socket with ssh -L.");
        if (_connected)
            throw new VmStateException(name, VmState.Unknown, "Connect-KvmConsole attaches to one VM at a time; select a single VM");
        _connected = true;
        // Checked here: ssh would run the console without a terminal, and its raw keys could not reach it.
        if (System.Console.IsInputRedirected)
            throw new InteractiveTerminalRequiredException(name);
        Host.UI.WriteLine($"Connecting to VM '{name}' on host '{remote.Display}' through ssh...");
        remote.Kvmps.Console(name, replay: !NoReplay.IsPresent);
        if (PassThru.IsPresent)
            Output.WriteObject(remote.Vm(name));
    }
}
