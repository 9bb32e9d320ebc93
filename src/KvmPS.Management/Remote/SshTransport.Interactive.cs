using System.ComponentModel;
using System.Diagnostics;

namespace KvmPS.Management.Remote;

public sealed partial class SshTransport
{
    /// <summary>
    /// ssh's argument vector for an interactive command (<c>kvmps vm console NAME</c>): <c>-t</c> gives it a terminal
    /// there, and <c>-e none</c> turns off ssh's own escape character, so every key (<c>~.</c> too) reaches the remote
    /// kvmps and its Ctrl-] detaches as it does here.
    /// </summary>
    public IReadOnlyList<string> BuildInteractiveArguments(SshTarget target, IReadOnlyList<string> kvmpsArguments)
    {
        var arguments = SshArguments(target, ["-t"], ["-e", "none"]);
        arguments.Add(RemoteCommandLine(kvmpsArguments));
        return arguments;
    }

    /// <summary>
    /// Runs <c>kvmps ARGS</c> on <paramref name="target"/> with this process's terminal (stdin and stdout are ssh's
    /// own, not read by us) and returns the remote exit status. Only ssh's stderr is read (the remote command's goes
    /// through its terminal to stdout), so ssh's own failures still become typed <see cref="RemoteHostException"/>s.
    /// </summary>
    public int RunInteractive(SshTarget target, IReadOnlyList<string> kvmpsArguments)
    {
        ArgumentNullException.ThrowIfNull(target);
        SshSession.CheckFiles(Options, target);
        var start = new ProcessStartInfo(Options.SshProgram) { UseShellExecute = false, RedirectStandardError = true };
        foreach (var argument in BuildInteractiveArguments(target, kvmpsArguments))
            start.ArgumentList.Add(argument);
        using (var process = StartSsh(target, start))
        {
            var error = process.StandardError.ReadToEndAsync();
            process.WaitForExit();
            var result = new RemoteCommandResult(target, process.ExitCode, "", error.GetAwaiter().GetResult());
            ThrowOnTransportFailure(result, Options.RemoteKvmps);
            return result.ExitCode;
        }
    }
}
