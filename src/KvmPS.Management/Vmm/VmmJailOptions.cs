using System.Globalization;
using System.Runtime.InteropServices;
using KvmPS.Interop;
using KvmPS.Management.Store;

namespace KvmPS.Management.Vmm;

/// <summary>
/// Whether management starts kvmps-vmm jailed (docs/confinement.md, "The jail"). On by default: as root, when the
/// <c>kvmps</c> system user exists (<c>./build.sh setup</c> makes it). <c>KVMPS_VMM_JAIL=off</c> turns it off (for
/// debugging); <c>on</c> requires it. A disk, NIC or vfio-user device hot-plugged into a running VM is opened
/// (connected) by management and passed open (<see cref="VmmPassedFiles"/>). A jailed VMM gets
/// <c>--user kvmps --cgroup kvmps/VM</c>, a minimal environment, and its VM folder (and the snapshot folders made for
/// it later) owned by that user, so it can still write snapshots, rotate its serial log and remove its socket.
/// </summary>
public static class VmmJailOptions
{
    public const string Variable = "KVMPS_VMM_JAIL";
    public const string UserName = "kvmps";

    /// <summary>
    /// The jail user's uid and gid when management jails its VMMs now; null when it does not: the setting is off; or
    /// it is unset and this process is not root (the VMM then runs as this unprivileged user already) or there is no
    /// <c>kvmps</c> user (<see cref="UnjailedNote"/> says so in the VM's log). Asked for (<c>on</c>) and impossible, or
    /// an unknown value: JailSettingException, never a silent unconfined VMM.
    /// </summary>
    public static (uint Uid, uint Gid)? JailUser()
    {
        string? setting = Environment.GetEnvironmentVariable(Variable);
        if (setting == "off") return null;
        bool required = setting == "on";
        if (!required && !string.IsNullOrEmpty(setting)) throw new JailSettingException(setting, "the setting is 'on' or 'off' (unset: on as root when the 'kvmps' user exists)");
        if (Libc.GetEuid() != 0)
            return required ? throw new JailSettingException(setting!, "only root can start a jailed VMM (it changes user and mounts)") : null;
        if (FindUser() is { } user) return user;
        return required ? throw new JailSettingException(setting!, $"the system user '{UserName}' does not exist ('./build.sh setup' creates it)") : null;
    }

    /// <summary>Why a VMM management starts as root is not jailed though the setting is left at its default; null otherwise.</summary>
    public static string? UnjailedNote() =>
        string.IsNullOrEmpty(Environment.GetEnvironmentVariable(Variable)) && Libc.GetEuid() == 0 && FindUser() is null
            ? $"kvmps-vmm runs as root, not jailed: there is no system user '{UserName}' ('./build.sh setup' creates it; {Variable}=off turns the jail off without this note)"
            : null;

    private static (uint Uid, uint Gid)? FindUser()
    {
        foreach (string line in File.Exists("/etc/passwd") ? File.ReadLines("/etc/passwd") : [])
        {
            var f = line.Split(':');
            if (f.Length >= 4 && f[0] == UserName && uint.TryParse(f[2], NumberStyles.None, CultureInfo.InvariantCulture, out uint uid)
                && uint.TryParse(f[3], NumberStyles.None, CultureInfo.InvariantCulture, out uint gid) && uid != 0)
                return (uid, gid);
        }
        return null;
    }

    /// <summary>The VMM's jail arguments for <paramref name="vmName"/> (none when not jailing); hands the VM folder to the jail user.</summary>
    public static string[] Arguments(VmStore store, string vmName)
    {
        if (JailUser() is not { } user) return [];
        Give(store.VmDirectory(vmName), user);
        foreach (string sub in new[] { Snapshots.SnapshotStore.SnapshotsDirectoryName, VmStore.DiskDirectoryName })
            if (Directory.Exists(Path.Combine(store.VmDirectory(vmName), sub))) Give(Path.Combine(store.VmDirectory(vmName), sub), user);
        return ["--user", UserName, "--cgroup", $"kvmps/{vmName}"];
    }

    /// <summary>
    /// A folder management made inside a VM folder for the VMM to write into (a snapshot's staging folder): given to
    /// the VM folder's owner when that is the jail user, with every folder between them.
    /// </summary>
    public static void GiveToVmmOf(string vmDirectory, string folder)
    {
        if (FileOwnership.Of(vmDirectory) is not { OwnerUid: not 0 } owner || Libc.GetEuid() != 0) return;
        string relative = Path.GetRelativePath(vmDirectory, folder);
        if (relative.StartsWith("..", StringComparison.Ordinal) || Path.IsPathRooted(relative)) return;
        string at = vmDirectory;
        foreach (string part in relative.Split('/'))
        {
            at = Path.Combine(at, part);
            Give(at, (owner.OwnerUid, owner.GroupGid));
        }
    }

    private static void Give(string path, (uint Uid, uint Gid) user)
    {
        if (Libc.Lchown(path, user.Uid, user.Gid) != 0)
            throw new IOException($"{path}: cannot be given to the VMM's user {UserName} (uid {user.Uid}): {Libc.Describe(Marshal.GetLastPInvokeError())}");
    }

    /// <summary>What a jailed VMM keeps of the caller's environment: the locale, the time zone, KvmPS's and .NET's own settings.</summary>
    public static List<string> MinimalEnvironment(System.Collections.IDictionary current)
    {
        var kept = new List<string> { "PATH=/usr/sbin:/usr/bin:/sbin:/bin" };
        foreach (System.Collections.DictionaryEntry entry in current)
        {
            string key = (string)entry.Key;
            if (key is "LANG" or "TZ" || key.StartsWith("LC_", StringComparison.Ordinal) || key.StartsWith("KVMPS_", StringComparison.Ordinal) || key.StartsWith("DOTNET_", StringComparison.Ordinal))
                kept.Add($"{key}={entry.Value}");
        }
        return kept;
    }
}

/// <summary><c>KVMPS_VMM_JAIL</c> asks for what cannot be done here; names the value and why.</summary>
public sealed class JailSettingException(string value, string reason)
    : InvalidOperationException($"{VmmJailOptions.Variable}={value}: {reason}")
{
    public string Value { get; } = value;
    public string Reason { get; } = reason;
}
