using System.ComponentModel;
using System.Diagnostics;
using System.Text;

namespace KvmPS.Management.Remote;

/// <summary>What the remote kvmps printed and its exit status.</summary>
public sealed record RemoteCommandResult(SshTarget Target, int ExitCode, string StandardOutput, string StandardError);

/// <summary>
/// Runs <c>kvmps</c> on another host through the system <c>ssh</c> (OpenSSH), the way <c>virsh -c qemu+ssh://</c>
/// does: key-based (<c>BatchMode=yes</c>: never a password prompt), no agent or daemon of ours on the remote side.
/// ssh's own failures (exit status 255) and a missing remote kvmps (126/127) become typed
/// <see cref="RemoteHostException"/>s naming the host; any other status is the remote kvmps's own and is returned.
/// </summary>
public sealed partial class SshTransport(SshTransportOptions? options = null)
{
    /// <summary>ssh's exit status for its own errors (connection, authentication); the remote command's otherwise.</summary>
    public const int SshErrorExitCode = 255;

    /// <summary>The POSIX shell's status for a command it found but cannot execute.</summary>
    public const int CommandNotExecutableExitCode = 126;

    /// <summary>The POSIX shell's status for a command not found.</summary>
    public const int CommandNotFoundExitCode = 127;

    public SshTransportOptions Options { get; } = options ?? new SshTransportOptions();

    /// <summary>Runs <c>kvmps ARGS</c> on <paramref name="target"/>; <paramref name="standardInput"/> is fed to it (none: an empty input).</summary>
    public RemoteCommandResult Run(SshTarget target, IReadOnlyList<string> kvmpsArguments, string? standardInput = null)
    {
        ArgumentNullException.ThrowIfNull(target);
        ArgumentNullException.ThrowIfNull(kvmpsArguments);
        if (Options.KeyFilePath is { } key && !File.Exists(key))
            throw new FileNotFoundException($"The SSH key file '{key}' for host '{target}' does not exist.", key);
        if (Options.ConfigFilePath is { } config && !File.Exists(config))
            throw new FileNotFoundException($"The ssh_config file '{config}' for host '{target}' does not exist.", config);

        var start = new ProcessStartInfo(Options.SshProgram)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            StandardOutputEncoding = Encoding.UTF8,
            StandardErrorEncoding = Encoding.UTF8,
        };
        foreach (var argument in BuildSshArguments(target, kvmpsArguments))
            start.ArgumentList.Add(argument);

        using (var process = StartSsh(target, start))
        {
            var output = process.StandardOutput.ReadToEndAsync();
            var error = process.StandardError.ReadToEndAsync();
            try
            {
                if (standardInput is not null)
                    process.StandardInput.Write(standardInput);
                process.StandardInput.Close();
            }
            catch (IOException)
            {
                // ssh ended before reading its input (no connection): its exit status says why.
            }
            if (Options.CommandTimeout is { } timeout && !process.WaitForExit(timeout))
            {
                process.Kill(entireProcessTree: true);
                process.WaitForExit();
                throw new RemoteTimeoutException(target.ToString(), timeout);
            }
            process.WaitForExit();
            var result = new RemoteCommandResult(target, process.ExitCode, output.GetAwaiter().GetResult(), error.GetAwaiter().GetResult());
            ThrowOnTransportFailure(result, Options.RemoteKvmps);
            return result;
        }
    }

    /// <summary>
    /// ssh's argument vector: options first, <c>--</c>, the validated host, then one remote command string with every
    /// word single-quoted (ssh joins its command words with spaces and hands them to the remote login shell).
    /// </summary>
    public IReadOnlyList<string> BuildSshArguments(SshTarget target, IReadOnlyList<string> kvmpsArguments)
    {
        var arguments = SshArguments(target, ["-T"], []); // no terminal: kvmps's output is read by a program
        arguments.Add(RemoteCommandLine(kvmpsArguments));
        return arguments;
    }

    /// <summary>
    /// ssh's argument vector for a forward only (<c>-N</c>: no remote command): <c>-L 127.0.0.1:PORT:REMOTE_SOCKET</c>,
    /// with <c>ExitOnForwardFailure</c> so a port that cannot be bound ends ssh instead of leaving it idle.
    /// </summary>
    public IReadOnlyList<string> BuildForwardArguments(SshTarget target, int localPort, string remoteSocketPath) =>
        SshArguments(target, ["-N", "-T"],
        [
            "-o", "ExitOnForwardFailure=yes",
            "-o", "ServerAliveInterval=5",
            "-o", "ServerAliveCountMax=3",
            "-L", $"127.0.0.1:{localPort}:{remoteSocketPath}",
        ]);

    /// <summary>
    /// The options every ssh run gets (batch mode, connect timeout, config file, key, user) around
    /// <paramref name="leading"/> and <paramref name="extra"/> options, then <c>-- HOST</c>. The target is validated again here: one built any other way must
    /// not reach ssh's argument parser.
    /// </summary>
    private List<string> SshArguments(SshTarget target, IEnumerable<string> leading, IEnumerable<string> extra)
    {
        SshTarget.ValidateHostName(target.HostName);
        if (target.UserName is { } user)
            SshTarget.ValidateUserName(user, target.HostName);
        var arguments = new List<string>(leading)
        {
            "-o", "BatchMode=yes",
            "-o", $"ConnectTimeout={Options.ConnectTimeoutSeconds}",
        };
        arguments.AddRange(extra);
        if (Options.ConfigFilePath is { } config)
            arguments.AddRange(["-F", config]);
        if (Options.KeyFilePath is { } key)
            arguments.AddRange(["-i", key, "-o", "IdentitiesOnly=yes"]);
        if (target.UserName is { } userName)
            arguments.AddRange(["-l", userName]);
        arguments.Add("--");
        arguments.Add(target.HostName);
        return arguments;
    }

    /// <summary>
    /// The shell command the remote login shell runs. KVMPS_HOST is cleared for it: a remote profile that sets it
    /// must not send the command on to yet another host.
    /// </summary>
    public string RemoteCommandLine(IReadOnlyList<string> kvmpsArguments)
    {
        var line = new StringBuilder("KVMPS_HOST= ").Append(ShellQuote(Options.RemoteKvmps));
        foreach (var argument in kvmpsArguments)
            line.Append(' ').Append(ShellQuote(argument));
        return line.ToString();
    }

    /// <summary>One POSIX shell word: single quotes, with each ' written as '\''.</summary>
    public static string ShellQuote(string word)
    {
        ArgumentNullException.ThrowIfNull(word);
        if (word.Contains('\0'))
            throw new ArgumentException("A remote command argument cannot contain a NUL character.", nameof(word));
        return "'" + word.Replace("'", "'\\''", StringComparison.Ordinal) + "'";
    }

    /// <summary>Turns ssh's own failures into typed errors; returns normally when the remote kvmps answered.</summary>
    internal static void ThrowOnTransportFailure(RemoteCommandResult result, string remoteKvmps)
    {
        var host = result.Target.ToString();
        var sshError = LastLines(result.StandardError);
        switch (result.ExitCode)
        {
            case SshErrorExitCode:
                if (Has(result.StandardError, "Permission denied", "Too many authentication failures", "no mutual signature algorithm"))
                    throw new RemoteAuthenticationException(host, sshError, hostKey: false);
                if (Has(result.StandardError, "Host key verification failed", "REMOTE HOST IDENTIFICATION HAS CHANGED", "No ED25519 host key is known", "host key is known"))
                    throw new RemoteAuthenticationException(host, sshError, hostKey: true);
                if (Has(result.StandardError, "Could not resolve hostname", "Connection refused", "Connection timed out", "timed out",
                        "No route to host", "Network is unreachable", "Connection closed", "Connection reset", "kex_exchange_identification", "Broken pipe"))
                    throw new RemoteHostUnreachableException(host, sshError);
                throw new RemoteHostException(host, $"ssh to host '{host}' failed (exit status 255): {(sshError.Length > 0 ? sshError : "no message")}", sshError);
            case CommandNotFoundExitCode or CommandNotExecutableExitCode:
                throw new RemoteKvmpsNotFoundException(host, remoteKvmps, sshError);
        }
    }

    private static bool Has(string text, params string[] needles) =>
        needles.Any(n => text.Contains(n, StringComparison.OrdinalIgnoreCase));

    // ssh prints one line per failure, after any banner or warning: the last lines are the reason.
    private static string LastLines(string text)
    {
        var lines = text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        return string.Join(" ", lines.TakeLast(2));
    }

    /// <summary>Starts ssh; a missing ssh program is <see cref="SshClientNotFoundException"/> naming it.</summary>
    private Process StartSsh(SshTarget target, ProcessStartInfo start)
    {
        try { return Process.Start(start) ?? throw new Win32Exception("Process.Start returned no process"); }
        catch (Win32Exception e) { throw new SshClientNotFoundException(target.ToString(), Options.SshProgram, e); }
    }
}
