using System.Management.Automation;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.SerialConsole;
using KvmPS.Management.Vmm;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Connect-KvmConsole: attaches this terminal to the VM's serial console until Ctrl-] is typed.</summary>
[Cmdlet(VerbsCommunications.Connect, "KvmConsole", DefaultParameterSetName = NameSet)]
[OutputType(typeof(KvmVm))]
public sealed class ConnectKvmConsoleCommand : KvmVmCmdletBase
{
    /// <summary>Do not replay the last 64 KiB of console output first.</summary>
    [Parameter]
    public SwitchParameter NoReplay { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    private bool _connected;

    protected override void ProcessVm(string name)
    {
        if (_connected)
            throw new VmStateException(name, VmState.Unknown, "Connect-KvmConsole attaches to one VM at a time; select a single VM");
        _connected = true;
        var info = Manager.Get(name);
        if (info.State is not (VmState.Running or VmState.Paused))
            throw new VmStateException(name, info.State, $"VM '{name}' is {info.State}; only a running or paused VM has a console to attach to (see Get-KvmConsoleLog)");
        if (System.Console.IsInputRedirected)
            throw new PSInvalidOperationException("Connect-KvmConsole needs an interactive terminal (standard input is redirected).");

        using var client = VmmClient.Connect(info.SocketPath, Manager.Options.QueryTimeout, Manager.Options.QueryTimeout);
        var console = client.AttachConsole(replay: !NoReplay.IsPresent);
        Host.UI.WriteLine($"Connected to the console of VM '{name}'. Type Ctrl-] to detach.");
        var end = ConsoleBridge.Run(console, System.Console.OpenStandardOutput(), ReadKeys);
        Host.UI.WriteLine();
        Host.UI.WriteLine(end switch
        {
            ConsoleBridgeEnd.Detached => $"Detached from VM '{name}'; it keeps running.",
            ConsoleBridgeEnd.VmEnded => $"The console of VM '{name}' closed (the VM stopped).",
            _ => "Input ended; detached.",
        });
        if (PassThru.IsPresent)
            Output.WriteObject(new KvmVm(Manager.Get(name)));
    }

    /// <summary>Keys typed within <paramref name="wait"/>, as the bytes a serial terminal sends.</summary>
    private static byte[]? ReadKeys(TimeSpan wait)
    {
        var deadline = DateTime.UtcNow + wait;
        while (!System.Console.KeyAvailable)
        {
            if (DateTime.UtcNow >= deadline)
                return Array.Empty<byte>();
            Thread.Sleep(10);
        }
        var bytes = new List<byte>();
        var previous = System.Console.TreatControlCAsInput;
        System.Console.TreatControlCAsInput = true;
        try
        {
            while (System.Console.KeyAvailable)
                bytes.AddRange(ConsoleKeys.ToBytes(System.Console.ReadKey(intercept: true)));
        }
        finally
        {
            System.Console.TreatControlCAsInput = previous;
        }
        return bytes.ToArray();
    }
}
