using System.Text.Json;

namespace KvmPS.Management.Remote;

/// <summary>The remote kvmps answered but not as kvmps does (not JSON, fields missing): a version mismatch or not kvmps.</summary>
public sealed class RemoteProtocolException(string hostName, string detail)
    : RemoteHostException(hostName, $"kvmps on host '{hostName}' answered in an unexpected form: {detail}.");

/// <summary>The remote kvmps ran and refused or failed the command; carries its exit status and message.</summary>
public sealed class RemoteCommandFailedException(string hostName, int exitCode, string remoteMessage)
    : RemoteHostException(hostName, $"On host '{hostName}': {remoteMessage} (kvmps exit status {exitCode})")
{
    /// <summary>The remote kvmps's exit status (docs/cli.md: 5 = VM not found, 4 = operation failed, ...).</summary>
    public int ExitCode { get; } = exitCode;

    public string RemoteMessage { get; } = remoteMessage;

    /// <summary>The remote kvmps's "VM not found" status (kvmps ExitCodes.VmNotFound).</summary>
    public const int VmNotFoundExitCode = 5;

    public bool IsVmNotFound => ExitCode == VmNotFoundExitCode;
}

/// <summary>
/// VM operations on another host, as <c>kvmps --json</c> commands through an <see cref="SshTransport"/>. This is what
/// the cmdlets' <c>-HostName</c> uses: parameters in, the remote kvmps's JSON out, read into <see cref="RemoteVmInfo"/>.
/// </summary>
public sealed partial class RemoteKvmps(SshTarget target, SshTransport transport)
{
    public SshTarget Target { get; } = target;

    internal SshTransport Transport => transport;

    /// <summary>Every VM in the remote store.</summary>
    public IReadOnlyList<RemoteVmInfo> List()
    {
        using var json = RunJson(["vm", "list", "--json"]);
        if (json.RootElement.ValueKind != JsonValueKind.Array)
            throw new RemoteProtocolException(Target.ToString(), "'vm list --json' did not print an array");
        return json.RootElement.EnumerateArray().Select(vm => RemoteVmInfo.FromJson(Target.ToString(), vm)).ToList();
    }

    /// <summary>Starts a VM there and returns its state after starting.</summary>
    public RemoteVmInfo Start(string name) => OneVm(["vm", "start", "--json", "--", name]);

    /// <summary>Shuts a VM down there (<paramref name="turnOff"/>: power it off at once) and returns its state after.</summary>
    public RemoteVmInfo Stop(string name, bool turnOff) =>
        OneVm(turnOff ? ["vm", "stop", "--json", "--force", "--", name] : ["vm", "stop", "--json", "--", name]);

    /// <summary>Restarts a VM there (<paramref name="turnOff"/>: power it off at once first) and returns its state after.</summary>
    public RemoteVmInfo Restart(string name, bool turnOff) =>
        OneVm(turnOff ? ["vm", "restart", "--json", "--force", "--", name] : ["vm", "restart", "--json", "--", name]);

    /// <summary>Pauses the vCPUs of a VM there and returns its state after.</summary>
    public RemoteVmInfo Suspend(string name) => OneVm(["vm", "suspend", "--json", "--", name]);

    /// <summary>Lets a paused VM there run again and returns its state after.</summary>
    public RemoteVmInfo Resume(string name) => OneVm(["vm", "resume", "--json", "--", name]);

    private RemoteVmInfo OneVm(string[] arguments)
    {
        using var json = RunJson(arguments);
        return RemoteVmInfo.FromJson(Target.ToString(), json.RootElement);
    }

    /// <summary>
    /// Runs one kvmps command there; a non-zero status is a <see cref="RemoteCommandFailedException"/> with its
    /// message, except <paramref name="answeredExitCodes"/>: statuses with which that command still prints its JSON
    /// (test's drift, apply's failed step).
    /// </summary>
    public JsonDocument RunJson(IReadOnlyList<string> arguments, string? standardInput = null, IReadOnlyCollection<int>? answeredExitCodes = null)
    {
        var result = transport.Run(Target, arguments, standardInput);
        if (result.ExitCode != 0 && !(answeredExitCodes?.Contains(result.ExitCode) ?? false))
            throw new RemoteCommandFailedException(Target.ToString(), result.ExitCode, RemoteMessage(result.StandardError));
        try
        {
            return JsonDocument.Parse(result.StandardOutput);
        }
        catch (JsonException) when (result.ExitCode != 0)
        {
            throw new RemoteCommandFailedException(Target.ToString(), result.ExitCode, RemoteMessage(result.StandardError));
        }
        catch (JsonException e)
        {
            throw new RemoteProtocolException(Target.ToString(), $"'{string.Join(' ', arguments)}' printed no JSON ({e.Message})");
        }
    }

    // kvmps prefixes its errors with "kvmps: "; the host is named by the exception already.
    internal static string RemoteMessage(string standardError)
    {
        var lines = standardError.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Where(l => !l.StartsWith("Run 'kvmps --help'", StringComparison.Ordinal))
            .Select(l => l.StartsWith("kvmps: ", StringComparison.Ordinal) ? l["kvmps: ".Length..] : l);
        var message = string.Join(" ", lines);
        return message.Length > 0 ? message : "no message";
    }
}
