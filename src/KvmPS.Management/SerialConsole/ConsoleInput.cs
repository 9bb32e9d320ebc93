using System.Collections.Concurrent;

namespace KvmPS.Management.SerialConsole;

/// <summary>What the user types into a <see cref="ConsoleSession"/>.</summary>
public interface IConsoleInput : IDisposable
{
    /// <summary>
    /// Waits at most <paramref name="wait"/> for input and returns the bytes typed (empty if none), or null when
    /// input has ended. Polling keeps the session responsive to the VM ending.
    /// </summary>
    byte[]? Read(TimeSpan wait);
}

/// <summary>The input of this process: keys from the terminal, or the raw bytes of redirected stdin.</summary>
public static class ConsoleInput
{
    public static IConsoleInput FromCurrentProcess() =>
        Console.IsInputRedirected ? new StreamConsoleInput(Console.OpenStandardInput()) : new KeyboardConsoleInput();
}

/// <summary>
/// Keys read from the terminal without echo (<see cref="Console.ReadKey(bool)"/>) and turned into the bytes a serial
/// terminal sends (<see cref="ConsoleKeys"/>). Ctrl-C goes to the guest, not to this process, while it is open.
/// </summary>
public sealed class KeyboardConsoleInput : IConsoleInput
{
    private readonly bool _previousTreatControlC;
    private bool _disposed;

    public KeyboardConsoleInput()
    {
        _previousTreatControlC = Console.TreatControlCAsInput;
        Console.TreatControlCAsInput = true;
    }

    public byte[]? Read(TimeSpan wait)
    {
        var deadline = DateTime.UtcNow + wait;
        while (!Console.KeyAvailable)
        {
            if (DateTime.UtcNow >= deadline)
                return Array.Empty<byte>();
            Thread.Sleep(10);
        }
        var bytes = new List<byte>();
        while (Console.KeyAvailable)
            bytes.AddRange(ConsoleKeys.ToBytes(Console.ReadKey(intercept: true)));
        return bytes.ToArray();
    }

    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        Console.TreatControlCAsInput = _previousTreatControlC;
    }
}

/// <summary>Raw bytes from a stream (redirected stdin), read on a background thread so <see cref="Read"/> can time out.</summary>
public sealed class StreamConsoleInput : IConsoleInput
{
    private readonly BlockingCollection<byte[]> _chunks = new();

    public StreamConsoleInput(Stream input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var thread = new Thread(() =>
        {
            var buffer = new byte[1024];
            try
            {
                int n;
                while ((n = input.Read(buffer, 0, buffer.Length)) > 0)
                    _chunks.Add(buffer.AsSpan(0, n).ToArray());
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException)
            {
                // Input gone: same as end of input.
            }
            finally
            {
                _chunks.CompleteAdding();
            }
        }) { IsBackground = true, Name = "kvmps console input" };
        thread.Start();
    }

    public byte[]? Read(TimeSpan wait)
    {
        if (_chunks.TryTake(out var chunk, wait))
            return chunk;
        return _chunks.IsCompleted ? null : Array.Empty<byte>();
    }

    public void Dispose()
    {
        // The reader thread is a background thread blocked in Read; it ends with the process or the stream.
    }
}
