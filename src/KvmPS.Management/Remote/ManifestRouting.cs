using KvmPS.Management.DesiredState;

namespace KvmPS.Management.Remote;

/// <summary>A manifest file that names another host (top-level <c>HostName</c>), and the host it goes to.</summary>
public sealed record RemoteManifest(string Path, SshTarget Host);

/// <summary>Manifest files split by the host each is for: the ones for this host, and the ones sent elsewhere.</summary>
public sealed record RoutedManifests(IReadOnlyList<string> LocalFiles, IReadOnlyList<RemoteManifest> Remote)
{
    public bool HasRemote => Remote.Count > 0;
}

/// <summary>
/// Splits manifest files by their top-level <c>HostName</c> (docs/remote.md). The one routing rule of every front end
/// (<c>kvmps apply|plan|test|get</c> and the *-KvmDesiredState cmdlets), so they agree on which host a file is for.
/// </summary>
public static class ManifestRouting
{
    /// <param name="defaultUserName">The SSH user for hosts named without one (<c>HostName = 'h2'</c>, not <c>'root@h2'</c>).</param>
    /// <exception cref="DesiredStateException">A HostName that is not a string or could be read by ssh as an option, at its position.</exception>
    public static RoutedManifests Split(IEnumerable<string> paths, string? defaultUserName = null)
    {
        var local = new List<string>();
        var remote = new List<RemoteManifest>();
        foreach (var path in paths)
        {
            // A missing file stays "local": reading it reports the error as before.
            var host = File.Exists(path) ? ManifestHost.Read(path) : null;
            if (host is null)
                local.Add(path);
            else
                remote.Add(new RemoteManifest(path, host.UserName is null && defaultUserName is not null ? new SshTarget(host.HostName, defaultUserName) : host));
        }
        return new RoutedManifests(local, remote);
    }
}
