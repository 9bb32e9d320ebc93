namespace KvmPS.Management.SerialConsole;

/// <summary>Why <see cref="ConsoleBridge.Run"/> returned.</summary>
public enum ConsoleBridgeEnd
{
    /// <summary>The user typed the detach key; the VM keeps running.</summary>
    Detached,

    /// <summary>The VMM closed the console (the VM stopped).</summary>
    VmEnded,

    /// <summary>The input ended (stdin closed) or the caller cancelled.</summary>
    InputEnded,
}

/// <summary>
/// Connects an attached VMM console stream (<c>VmmClient.AttachConsole</c>) to a terminal: guest output is
/// copied to <c>output</c> as it arrives, input goes to the guest until the detach key (Ctrl-], 0x1D, as in
/// telnet and virsh) is typed. Used by <c>Connect-KvmConsole</c> and <c>kvmps vm console</c>; the terminal
/// itself (raw keys, echo) is the caller's business.
/// </summary>
public static class ConsoleBridge
{
    /// <summary>Ctrl-] .</summary>
    public const byte DetachByte = 0x1D;

    /// <param name="console">The attached console stream; it is disposed on return.</param>
    /// <param name="output">Where guest output goes (the terminal).</param>
    /// <param name="readInput">
    /// Waits at most the given time for input and returns the bytes typed (empty if none), or null when input
    /// has ended. Polling keeps the loop responsive to the VM ending.
    /// </param>
    public static ConsoleBridgeEnd Run(Stream console, Stream output, Func<TimeSpan, byte[]?> readInput, CancellationToken cancellationToken = default)
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
                    return ConsoleBridgeEnd.VmEnded;
                if (cancellationToken.IsCancellationRequested)
                    return ConsoleBridgeEnd.InputEnded;
                var input = readInput(TimeSpan.FromMilliseconds(100));
                if (input is null)
                    return ConsoleBridgeEnd.InputEnded;
                if (input.Length == 0)
                    continue;
                var detach = Array.IndexOf(input, DetachByte);
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
                    return ConsoleBridgeEnd.VmEnded;
                }
                if (detach >= 0)
                    return ConsoleBridgeEnd.Detached;
            }
        }
        finally
        {
            console.Dispose();
            pump.Wait(TimeSpan.FromSeconds(2));
        }
    }
}
