using KvmPS.Management.Lifecycle;
using KvmPS.Management.Vmm;

namespace KvmPS.Management.SerialConsole;

/// <summary>Why <see cref="ConsoleSession.Run"/> returned.</summary>
public enum ConsoleSessionEnd
{
    /// <summary>The user typed the detach key; the VM keeps running.</summary>
    Detached,

    /// <summary>The VMM closed the console (the VM stopped).</summary>
    VmEnded,

    /// <summary>The input ended (stdin closed) or the caller cancelled.</summary>
    InputEnded,
}

/// <summary>
/// An interactive session on a VM's serial console: the one implementation behind <c>Connect-KvmConsole</c> and
/// <c>kvmps vm console</c>. Guest output is copied to the terminal as it arrives; what the user types
/// (<see cref="IConsoleInput"/>, keys translated by <see cref="ConsoleKeys"/>) goes to the guest until the detach
/// key Ctrl-] (0x1D, as in telnet and virsh). Front ends only open it, print <see cref="ConnectedMessage"/>,
/// <see cref="Run"/> it and print <see cref="EndMessage"/>.
/// </summary>
public sealed class ConsoleSession : IDisposable
{
    private readonly VmmClient _client;
    private readonly Stream _console;

    private ConsoleSession(string vmName, VmmClient client, Stream console)
    {
        VmName = vmName;
        _client = client;
        _console = console;
    }

    public string VmName { get; }

    public string ConnectedMessage => $"Connected to the console of VM '{VmName}'. Type Ctrl-] to detach.";

    /// <summary>
    /// Attaches to the console of a Running or Paused VM; <paramref name="replay"/> first sends the last 64 KiB of
    /// output. Throws <see cref="VmNotFoundException"/>, or <see cref="VmStateException"/> for a VM with no console.
    /// </summary>
    /// <param name="logCommand">How this front end shows the output so far (<c>Get-KvmConsoleLog -Name vm</c>), for
    /// the message when the VM has no console; null names the serial log file only.</param>
    public static ConsoleSession Open(VmManager manager, string vmName, bool replay = true, string? logCommand = null)
    {
        ArgumentNullException.ThrowIfNull(manager);
        var info = manager.Get(vmName);
        if (info.State is not (VmState.Running or VmState.Paused))
            throw new VmStateException(vmName, info.State,
                $"VM '{vmName}' is {info.State}; only a running or paused VM has a console to attach to. Its output so far: " +
                (logCommand is null ? info.SerialLogPath : $"{logCommand} (or {info.SerialLogPath})"));
        var client = VmmClient.Connect(info.SocketPath, manager.Options.QueryTimeout, manager.Options.QueryTimeout);
        try
        {
            return new ConsoleSession(vmName, client, client.AttachConsole(replay));
        }
        catch
        {
            client.Dispose();
            throw;
        }
    }

    /// <summary>Runs until detach, the VM ending, or the input ending. The session is closed on return.</summary>
    public ConsoleSessionEnd Run(Stream output, IConsoleInput input, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(input);
        return Pump(_console, output, input.Read, cancellationToken);
    }

    public string EndMessage(ConsoleSessionEnd end) => end switch
    {
        ConsoleSessionEnd.Detached => $"Detached from VM '{VmName}'; it keeps running.",
        ConsoleSessionEnd.VmEnded => $"The console of VM '{VmName}' closed (the VM stopped).",
        _ => $"Input ended; detached from VM '{VmName}'.",
    };

    public void Dispose()
    {
        _console.Dispose();
        _client.Dispose();
    }

    /// <summary>
    /// The bridge loop: copies <paramref name="console"/> to <paramref name="output"/> on a background task and
    /// input to the console on this thread, stopping at the first detach byte (bytes before it are still sent).
    /// <paramref name="console"/> is disposed on return.
    /// </summary>
    public static ConsoleSessionEnd Pump(Stream console, Stream output, Func<TimeSpan, byte[]?> readInput, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(console);
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(readInput);
        var pump = Task.Run(() =>
        {
            var buffer = new byte[4096];
            try
            {
                while (true)
                {
                    var n = console.Read(buffer, 0, buffer.Length);
                    if (n == 0)
                        return;
                    lock (output)
                    {
                        output.Write(buffer, 0, n);
                        output.Flush();
                    }
                }
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException or System.Net.Sockets.SocketException)
            {
                // Detached (stream disposed) or the VMM went away.
            }
        });
        try
        {
            while (true)
            {
                if (pump.IsCompleted)
                    return ConsoleSessionEnd.VmEnded;
                if (cancellationToken.IsCancellationRequested)
                    return ConsoleSessionEnd.InputEnded;
                var input = readInput(TimeSpan.FromMilliseconds(100));
                if (input is null)
                    return ConsoleSessionEnd.InputEnded;
                if (input.Length == 0)
                    continue;
                var detach = Array.IndexOf(input, ConsoleKeys.DetachByte);
                var send = detach >= 0 ? input.AsSpan(0, detach) : input;
                try
                {
                    if (!send.IsEmpty)
                    {
                        console.Write(send);
                        console.Flush();
                    }
                }
                catch (Exception e) when (e is IOException or ObjectDisposedException or System.Net.Sockets.SocketException)
                {
                    return ConsoleSessionEnd.VmEnded;
                }
                if (detach >= 0)
                    return ConsoleSessionEnd.Detached;
            }
        }
        finally
        {
            console.Dispose();
            pump.Wait(TimeSpan.FromSeconds(2));
        }
    }
}
