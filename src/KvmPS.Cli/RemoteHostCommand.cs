using KvmPS.Management.Remote;

namespace KvmPS.Cli;

/// <summary>
/// The global <c>--host [user@]host</c> option (or <c>KVMPS_HOST</c>): the rest of the command line runs as
/// <c>kvmps ...</c> on that host through ssh (docs/remote.md), and its output and exit status are this command's.
/// <c>--identity FILE</c> (or <c>KVMPS_SSH_KEY</c>) is the private key ssh offers. Both come before the command.
/// When ssh itself fails (host unreachable, key refused, no kvmps there) the exit status is
/// <see cref="ExitCodes.RemoteHost"/> and the message names the host.
/// </summary>
internal static class RemoteHostCommand
{
    public const string HostOption = "--host";
    public const string IdentityOption = "--identity";

    /// <summary>Runs <paramref name="args"/> remotely when a host is named; null when the command is for this host.</summary>
    public static int? TryRun(CliApp app, string[] args)
    {
        string? host = null, identity = null;
        var index = 0;
        while (index < args.Length)
        {
            if (TakeValue(args, ref index, HostOption) is { } h)
                host = host is null ? h : throw new UsageException($"option '{HostOption}' is given twice");
            else if (TakeValue(args, ref index, IdentityOption) is { } i)
                identity = identity is null ? i : throw new UsageException($"option '{IdentityOption}' is given twice");
            else
                break;
        }
        // An explicit --host wins; KVMPS_HOST= (empty) means this host, as the remote side runs with it.
        host ??= app.GetEnvironment("KVMPS_HOST") is { Length: > 0 } fromEnvironment ? fromEnvironment : null;
        identity ??= app.GetEnvironment("KVMPS_SSH_KEY") is { Length: > 0 } keyFromEnvironment ? keyFromEnvironment : null;
        if (host is null)
        {
            if (index > 0)
                throw new UsageException($"'{IdentityOption}' is for a remote host: give '{HostOption} [user@]HOST' too");
            return null;
        }

        SshTarget target;
        try
        {
            target = SshTarget.Parse(host);
        }
        catch (InvalidRemoteNameException e)
        {
            throw new UsageException($"{HostOption}: {e.Message}");
        }
        var rest = args[index..];
        var options = SshTransportOptions.FromEnvironment(app.GetEnvironment) with { KeyFilePath = identity };
        try
        {
            // vm console needs a terminal there: ssh -t with this terminal (Ctrl-] detaches there as here).
            if (rest.Length >= 2 && rest[0] == "vm" && rest[1] == "console")
                return new SshTransport(options).RunInteractive(target, rest);
            // dsc get|test|set read their instance JSON from stdin: it goes to the remote kvmps. Other commands
            // read no input, and a terminal's stdin must not be drained by them.
            var input = rest.Length > 0 && rest[0] == "dsc" ? app.In.ReadToEnd() : null;
            var result = new SshTransport(options).Run(target, rest, input);
            app.Out.Write(result.StandardOutput);
            app.Err.Write(result.StandardError);
            return result.ExitCode;
        }
        catch (FileNotFoundException e)
        {
            throw new UsageException(e.Message);
        }
        catch (RemoteHostException e)
        {
            app.Err.WriteLine($"kvmps: {e.Message}");
            return ExitCodes.RemoteHost;
        }
    }

    // "--host h2" or "--host=h2" at args[index]; advances past it.
    private static string? TakeValue(string[] args, ref int index, string option)
    {
        var arg = args[index];
        if (arg == option)
        {
            if (index + 1 >= args.Length)
                throw new UsageException($"option '{option}' needs a value");
            index += 2;
            return args[index - 1];
        }
        if (arg.StartsWith(option + "=", StringComparison.Ordinal))
        {
            index++;
            return arg[(option.Length + 1)..];
        }
        return null;
    }
}
