using KvmPS.Management.Remote;

namespace KvmPS.Cli;

/// <summary>
/// <c>kvmps apply|plan|test|get FILE...</c> where manifests name their host (top-level <c>HostName = 'h2'</c>,
/// docs/remote.md): the files without one run here as before; each file with one is sent to that host's
/// <c>kvmps VERB -</c> on stdin through ssh (<c>--identity</c>/<c>KVMPS_SSH_KEY</c> as for --host). One run converges
/// several hosts; the exit status is the first failure's (2..7), else 1 if any host drifts (test), else 0.
/// </summary>
internal static class RemoteManifestCommand
{
    private static readonly string[] Verbs = ["apply", "plan", "test", "get"];

    public static int? TryRun(CliApp app, string[] args)
    {
        if (args.Length < 2 || !Verbs.Contains(args[0], StringComparer.Ordinal))
            return null;
        var verb = args[0];
        var flags = args[1..].Where(a => a.StartsWith('-')).ToArray();
        var files = args[1..].Where(a => !a.StartsWith('-')).ToArray();
        // "--" or a flag with a value would change what counts as a file: leave such command lines to the verb.
        if (flags.Any(f => f is "--" or "-") || files.Length == 0)
            return null;
        var routed = ManifestRouting.Split(files);
        if (!routed.HasRemote)
            return null;
        if (flags.Contains("--json") && routed.Remote.Select(r => r.Host.ToString()).Distinct().Count() + (routed.LocalFiles.Count > 0 ? 1 : 0) > 1)
            throw new UsageException($"{verb} --json: the manifests name more than one host; run one host's manifests at a time for one JSON document");

        var statuses = new List<int>();
        var local = routed.LocalFiles.ToArray();
        if (local.Length > 0)
        {
            if (!flags.Contains("--json"))
                app.Out.WriteLine($"== this host: {string.Join(", ", local)}");
            statuses.Add(app.Dispatch(new ArgReader([verb, .. flags, .. local])));
        }
        var identity = app.GetEnvironment("KVMPS_SSH_KEY") is { Length: > 0 } key ? key : null;
        var transport = new SshTransport(SshTransportOptions.FromEnvironment(app.GetEnvironment) with { KeyFilePath = identity });
        foreach (var (file, host) in routed.Remote)
        {
            if (!flags.Contains("--json"))
                app.Out.WriteLine($"== host {host}: {file}");
            app.Out.Flush();
            try
            {
                var result = transport.Run(host, [verb, .. flags, "-"], File.ReadAllText(file));
                app.Out.Write(result.StandardOutput);
                app.Err.Write(result.StandardError);
                statuses.Add(result.ExitCode);
            }
            catch (RemoteHostException e)
            {
                app.Err.WriteLine($"kvmps: {file}: {e.Message}");
                statuses.Add(ExitCodes.RemoteHost);
            }
        }
        return statuses.FirstOrDefault(s => s > ExitCodes.Drift, statuses.Max());
    }
}
