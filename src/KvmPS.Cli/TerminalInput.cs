using System.Collections.Concurrent;
using KvmPS.Management.SerialConsole;

namespace KvmPS.Cli;

/// <summary>
/// Keyboard input for <c>kvmps vm console</c>: on a terminal, keys read without echo (Console.ReadKey) and
/// turned into the bytes a serial terminal sends; with redirected input, the raw bytes of stdin.
/// </summary>
internal sealed class TerminalInput : IDisposable
{
    private readonly BlockingCollection<byte[]>? _piped;
    private readonly bool _previousTreatControlC;
    private bool _disposed;

    private TerminalInput(BlockingCollection<byte[]>? piped)
    {
        _piped = piped;
        if (piped is null)
        {
            _previousTreatControlC = Console.TreatControlCAsInput;
            Console.TreatControlCAsInput = true;
        }
    }

    public static TerminalInput Open(TextReader input)
    {
        if (!Console.IsInputRedirected)
            return new TerminalInput(null);
        var queue = new BlockingCollection<byte[]>();
        var thread = new Thread(() =>
        {
            using var stdin = Console.OpenStandardInput();
            var buffer = new byte[1024];
            int n;
            while ((n = stdin.Read(buffer, 0, buffer.Length)) > 0)
                queue.Add(buffer.AsSpan(0, n).ToArray());
            queue.CompleteAdding();
        }) { IsBackground = true, Name = "kvmps console stdin" };
        thread.Start();
        return new TerminalInput(queue);
    }

    /// <summary>Bytes typed within <paramref name="wait"/> (empty if none); null once input has ended.</summary>
    public byte[]? Read(TimeSpan wait)
    {
        if (_piped is not null)
        {
            if (_piped.TryTake(out var chunk, wait))
                return chunk;
            return _piped.IsCompleted ? null : Array.Empty<byte>();
        }
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
        if (_piped is null)
            Console.TreatControlCAsInput = _previousTreatControlC;
    }
}
