using KvmPS.Interop;

namespace KvmPS.Management.Store;

/// <summary>
/// Where the store lives: <c>$KVMPS_HOME</c> if set; otherwise <c>/var/lib/kvmps</c> for root, or
/// <c>$XDG_DATA_HOME/kvmps</c> (default <c>~/.local/share/kvmps</c>) for other users.
/// </summary>
public static class VmStoreLocation
{
    public const string HomeVariable = "KVMPS_HOME";
    public const string SystemRoot = "/var/lib/kvmps";

    public static string ResolveDefaultRoot() =>
        ResolveDefaultRoot(Environment.GetEnvironmentVariable, Libc.GetEuid());

    /// <summary>Testable form: environment lookup and effective user id are injected.</summary>
    public static string ResolveDefaultRoot(Func<string, string?> environment, uint effectiveUserId)
    {
        var home = environment(HomeVariable);
        if (!string.IsNullOrEmpty(home))
            return Path.GetFullPath(home);
        if (effectiveUserId == 0)
            return SystemRoot;
        // The XDG base-directory spec says relative values must be ignored.
        var xdgData = environment("XDG_DATA_HOME");
        if (!string.IsNullOrEmpty(xdgData) && Path.IsPathRooted(xdgData))
            return Path.Combine(xdgData, "kvmps");
        var userHome = environment("HOME");
        if (string.IsNullOrEmpty(userHome))
            throw new VmStoreException($"Cannot locate the store: set {HomeVariable} (neither XDG_DATA_HOME nor HOME is set)");
        return Path.Combine(userHome, ".local", "share", "kvmps");
    }
}
