using KvmPS.Management.DesiredState;
using KvmPS.Management.Manifests;

namespace KvmPS.Management.Remote;

/// <summary>The host a manifest file names (top-level <c>HostName = 'h2'</c>), so one run can converge several hosts.</summary>
public static class ManifestHost
{
    /// <summary>
    /// The file's <c>HostName</c> as a validated target, or null when it names none. A file that does not parse is
    /// null too: reading it for real reports the error with its position.
    /// </summary>
    public static SshTarget? Read(string path)
    {
        PsdHashtable root;
        try
        {
            root = PsdReader.ParseDataFile(File.ReadAllText(path), path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ManifestParseException)
        {
            return null;
        }
        var entry = root.Entries.FirstOrDefault(e => string.Equals(e.Key, DesiredStateReader.HostNameKey, StringComparison.OrdinalIgnoreCase));
        return entry?.Value switch
        {
            null => null,
            PsdString host => Parse(host),
            var other => throw new DesiredStateException(other.Position, null, DesiredStateReader.HostNameKey, $"must be a string ('host' or 'user@host'), not {other.KindName}"),
        };
    }

    private static SshTarget Parse(PsdString host)
    {
        try
        {
            return SshTarget.Parse(host.Value);
        }
        catch (InvalidRemoteNameException e)
        {
            throw new DesiredStateException(host.Position, null, DesiredStateReader.HostNameKey, e.Message, e);
        }
    }
}
