using System.Collections.Concurrent;
using System.ComponentModel;
using System.Diagnostics;
using System.Text;

namespace KvmPS.Management.Remote;

/// <summary>
/// A remote kvmps command that runs while this side talks to it line by line (<c>kvmps vm receive</c> for a move
/// between hosts): ssh with its standard input kept open and its output read as it comes. Closing the input ends the
/// remote command's input (EOF), which is how the remote side learns that this side gave up or went away.
/// </summary>
public sealed class SshSession : IDisposable
{
    private readonly Process _process;
    private readonly BlockingCollection<string> _lines = new();
    private readonly Task<string> _error;
    private readonly SshTransport _transport;

    private SshSession(SshTransport transport, SshTarget target, Process process, Action<string>? errorLine)
    {
        _transport = transport;
        Target = target;
        _process = process;
        _error = errorLine is null ? process.StandardError.ReadToEndAsync() : Task.Run(() =>
        {
            // Line by line, so the remote command's progress lines are seen as they come (a remote move).
            var all = new StringBuilder();
            while (process.StandardError.ReadLine() is { } line)
            {
                all.AppendLine(line);
                errorLine(line);
            }
            return all.ToString();
        });
        var reader = new Thread(() =>
        {
            try
            {
                while (process.StandardOutput.ReadLine() is { } line)
                    _lines.Add(line);
            }
            catch (IOException)
            {
            }
            finally
            {
                _lines.CompleteAdding();
            }
        }) { IsBackground = true, Name = "ssh session output" };
        reader.Start();
    }

    public SshTarget Target { get; }

    public int Pid => _process.Id;

    public bool HasExited => _process.HasExited;

    /// <summary>The remote command's output ended and every line of it was read.</summary>
    public bool OutputEnded => _lines.IsCompleted;

    /// <summary>
    /// Starts <c>ssh ... kvmps ARGS</c> (the same arguments, validation and quoting as <see cref="SshTransport.Run"/>);
    /// <paramref name="errorLine"/>, if given, sees each line of its standard error as it comes.
    /// </summary>
    public static SshSession Start(SshTransport transport, SshTarget target, IReadOnlyList<string> kvmpsArguments, Action<string>? errorLine = null)
    {
        ArgumentNullException.ThrowIfNull(transport);
        ArgumentNullException.ThrowIfNull(target);
        CheckFiles(transport.Options, target);
        var start = new ProcessStartInfo(transport.Options.SshProgram)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            StandardOutputEncoding = Encoding.UTF8,
            StandardErrorEncoding = Encoding.UTF8,
        };
        foreach (var argument in transport.BuildSshArguments(target, kvmpsArguments))
            start.ArgumentList.Add(argument);
        try
        {
            var process = Process.Start(start) ?? throw new Win32Exception("Process.Start returned no process");
            return new SshSession(transport, target, process, errorLine);
        }
        catch (Win32Exception e)
        {
            throw new SshClientNotFoundException(target.ToString(), transport.Options.SshProgram, e);
        }
    }

    internal static void CheckFiles(SshTransportOptions options, SshTarget target)
    {
        if (options.KeyFilePath is { } key && !File.Exists(key))
            throw new FileNotFoundException($"The SSH key file '{key}' for host '{target}' does not exist.", key);
        if (options.ConfigFilePath is { } config && !File.Exists(config))
            throw new FileNotFoundException($"The ssh_config file '{config}' for host '{target}' does not exist.", config);
    }

    /// <summary>Writes one line to the remote command's input; false when the session is gone.</summary>
    public bool WriteLine(string line)
    {
        try
        {
            _process.StandardInput.Write(line + "\n");
            _process.StandardInput.Flush();
            return true;
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or InvalidOperationException)
        {
            return false;
        }
    }

    /// <summary>Ends the remote command's input (it reads EOF).</summary>
    public void CloseInput()
    {
        try
        {
            _process.StandardInput.Close();
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or InvalidOperationException)
        {
        }
    }

    /// <summary>The next output line; null when the output ended (the command exited) or <paramref name="timeout"/> passed.</summary>
    public string? ReadLine(TimeSpan timeout)
    {
        try
        {
            return _lines.TryTake(out var line, timeout) ? line : null;
        }
        catch (InvalidOperationException)
        {
            return null; // completed
        }
    }

    /// <summary>Waits for ssh to exit; kills it after <paramref name="timeout"/>. Returns its exit status.</summary>
    public int WaitForExit(TimeSpan timeout)
    {
        if (!_process.WaitForExit(timeout))
        {
            try
            {
                _process.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
            }
        }
        _process.WaitForExit();
        return _process.ExitCode;
    }

    /// <summary>What ssh and the remote command wrote to standard error (once ssh exited).</summary>
    public string StandardError => _process.HasExited ? _error.GetAwaiter().GetResult() : "";

    /// <summary>
    /// The session ended without the answer expected: ssh's own failures become the typed errors of
    /// <see cref="SshTransport.Run"/> (unreachable, key refused, no kvmps); the remote command's failure a
    /// <see cref="RemoteCommandFailedException"/> with its message.
    /// </summary>
    public RemoteHostException Failure()
    {
        var code = WaitForExit(TimeSpan.FromSeconds(30));
        var result = new RemoteCommandResult(Target, code, "", StandardError);
        SshTransport.ThrowOnTransportFailure(result, _transport.Options.RemoteKvmps);
        return new RemoteCommandFailedException(Target.ToString(), code, RemoteKvmps.RemoteMessage(result.StandardError));
    }

    public void Dispose()
    {
        CloseInput();
        try
        {
            if (!_process.HasExited)
                _process.Kill(entireProcessTree: true);
            _process.WaitForExit(5000);
        }
        catch (InvalidOperationException)
        {
        }
        _process.Dispose();
    }
}

/// <summary>
/// <c>ssh -N -L 127.0.0.1:PORT:REMOTE_SOCKET host</c>: a loopback TCP port here whose connections ssh carries,
/// encrypted, to a Unix socket on the remote host (a move's migration stream). TCP on this side, not a Unix socket:
/// a migration over a Unix socket passes memfds (SCM_RIGHTS), which cannot cross ssh.
/// </summary>
public sealed class SshForward : IDisposable
{
    private readonly Process _process;
    private readonly Task<string> _error;

    private SshForward(Process process, int port)
    {
        _process = process;
        Port = port;
        _error = process.StandardError.ReadToEndAsync();
    }

    /// <summary>The loopback port (127.0.0.1) that reaches the remote socket.</summary>
    public int Port { get; }

    /// <summary>
    /// Starts the forward and returns once ssh listens on the port (it logs in first: a refused key or unreachable
    /// host is a <see cref="RemoteHostException"/> here). <paramref name="remoteSocketPath"/> must be absolute,
    /// without ':' or whitespace (ssh's -L syntax).
    /// </summary>
    public static SshForward Start(SshTransport transport, SshTarget target, string remoteSocketPath, TimeSpan timeout)
    {
        ArgumentNullException.ThrowIfNull(transport);
        if (!remoteSocketPath.StartsWith('/') || remoteSocketPath.Any(c => c == ':' || char.IsWhiteSpace(c) || char.IsControl(c)))
            throw new RemoteProtocolException(target.ToString(), $"the socket path '{remoteSocketPath}' cannot be forwarded (absolute, without ':' or spaces)");
        SshSession.CheckFiles(transport.Options, target);
        Exception? last = null;
        for (var attempt = 0; attempt < 3; attempt++)
        {
            var port = FreeLoopbackPort();
            var start = new ProcessStartInfo(transport.Options.SshProgram)
            {
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (var argument in transport.BuildForwardArguments(target, port, remoteSocketPath))
                start.ArgumentList.Add(argument);
            Process process;
            try
            {
                process = Process.Start(start) ?? throw new Win32Exception("Process.Start returned no process");
            }
            catch (Win32Exception e)
            {
                throw new SshClientNotFoundException(target.ToString(), transport.Options.SshProgram, e);
            }
            var forward = new SshForward(process, port);
            var clock = Stopwatch.StartNew();
            while (!IsListening(port))
            {
                if (process.HasExited)
                {
                    process.WaitForExit();
                    var error = forward._error.GetAwaiter().GetResult();
                    var result = new RemoteCommandResult(target, process.ExitCode, "", error);
                    forward.Dispose();
                    if (error.Contains("forwarding", StringComparison.OrdinalIgnoreCase) && error.Contains("port", StringComparison.OrdinalIgnoreCase))
                    {
                        // The port was taken between our probe and ssh's bind: another one.
                        last = new RemoteHostException(target.ToString(), $"ssh could not forward a local port to host '{target}': {error.Trim()}", error);
                        break;
                    }
                    SshTransport.ThrowOnTransportFailure(result, transport.Options.RemoteKvmps);
                    throw new RemoteHostException(target.ToString(), $"ssh could not forward a local port to '{remoteSocketPath}' on host '{target}' (exit status {process.ExitCode}): {error.Trim()}", error);
                }
                if (clock.Elapsed > timeout)
                {
                    forward.Dispose();
                    throw new RemoteTimeoutException(target.ToString(), timeout);
                }
                Thread.Sleep(10);
            }
            if (!process.HasExited)
                return forward;
        }
        throw last ?? new RemoteHostException(target.ToString(), $"ssh could not forward a local port to host '{target}'");
    }

    private static int FreeLoopbackPort()
    {
        var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        var port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    /// <summary>True when something listens on 127.0.0.1:PORT in this network namespace (/proc/net/tcp, state 0A).</summary>
    private static bool IsListening(int port)
    {
        var local = $"0100007F:{port:X4}";
        try
        {
            foreach (var line in File.ReadLines("/proc/net/tcp"))
            {
                var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (fields.Length > 3 && fields[1] == local && fields[3] == "0A")
                    return true;
            }
        }
        catch (IOException)
        {
        }
        return false;
    }

    public void Dispose()
    {
        try
        {
            if (!_process.HasExited)
                _process.Kill(entireProcessTree: true);
            _process.WaitForExit(5000);
        }
        catch (InvalidOperationException)
        {
        }
        _process.Dispose();
    }
}
