using System.Globalization;

namespace KvmPS.Engine.Tests.Support;

/// <summary>A <c>KVMPS_TEST_JAIL</c> value that is neither <c>off</c>, <c>on</c> nor <c>UID:GID</c>.</summary>
internal sealed class TestJailSettingException(string value)
    : Exception($"KVMPS_TEST_JAIL='{value}' is not 'off', 'on' or UID:GID (numbers, not root)")
{
    public string Value { get; } = value;
}

/// <summary>
/// Whom the harness jails every test VMM as (docs/confinement.md, "The jail"; docs/testing.md). By default, as CI runs:
/// the <c>kvmps</c> system user (<c>./build.sh setup</c> makes it) when the tests run as root and it exists, else
/// unjailed. <c>KVMPS_TEST_JAIL=off</c> turns it off, <c>KVMPS_TEST_JAIL=UID:GID</c> picks another user, and
/// <c>KVMPS_TEST_JAIL=on</c> insists on the <c>kvmps</c> user (an error when it cannot be).
/// </summary>
internal static class TestJail
{
    public const string SystemUser = "kvmps";

    private static readonly Lazy<string?> Resolved = new(() => Resolve(Environment.GetEnvironmentVariable("KVMPS_TEST_JAIL")));

    /// <summary><c>UID:GID</c>, or null: the VMMs run unjailed.</summary>
    public static string? User => Resolved.Value;

    internal static string? Resolve(string? setting)
    {
        switch (setting)
        {
            case null or "": return KvmPS.Interop.Libc.GetEuid() == 0 ? SystemUserIds() : null;
            case "off": return null;
            case "on": return SystemUserIds() ?? throw new TestJailSettingException(setting + $" (no '{SystemUser}' user in /etc/passwd)");
        }
        return setting.Split(':') is [var uid, var gid] && uint.TryParse(uid, NumberStyles.None, CultureInfo.InvariantCulture, out uint u)
            && uint.TryParse(gid, NumberStyles.None, CultureInfo.InvariantCulture, out uint g) && u != 0 && g != 0
            ? setting : throw new TestJailSettingException(setting);
    }

    /// <summary>
    /// What the harness appends to a test VMM's arguments: <c>--jail on --user UID:GID</c> when the VMMs run jailed,
    /// else nothing. Nothing either for a test that passes its own <c>--jail</c> or <c>--user</c> (it gets exactly
    /// those), or says <paramref name="unjailed"/> (it asserts unjailed behaviour).
    /// </summary>
    public static string[] Options(IEnumerable<string> args, bool unjailed = false) =>
        unjailed || User is not { } user || args.Any(IsJailOption) ? [] : ["--jail", "on", "--user", user];

    private static bool IsJailOption(string arg) =>
        arg is "--jail" or "--user" || arg.StartsWith("--jail=", StringComparison.Ordinal) || arg.StartsWith("--user=", StringComparison.Ordinal);

    /// <summary>The <c>kvmps</c> user's <c>UID:GID</c> from /etc/passwd (as the VMM reads it: no NSS), or null.</summary>
    private static string? SystemUserIds()
    {
        if (!File.Exists("/etc/passwd")) return null;
        foreach (string line in File.ReadLines("/etc/passwd"))
            if (line.Split(':') is [SystemUser, _, var uid, var gid, ..]) return $"{uid}:{gid}";
        return null;
    }

    /// <summary>
    /// Gives <paramref name="path"/> (a test's folder, a socket the VMM must connect to) to the jail's user, as
    /// management gives a jailed VMM its VM folder; nothing when the VMMs run unjailed.
    /// </summary>
    public static void GiveToJailUser(string path)
    {
        if (User?.Split(':') is not [var uid, var gid]) return;
        if (KvmPS.Interop.Libc.Lchown(path, uint.Parse(uid, CultureInfo.InvariantCulture), uint.Parse(gid, CultureInfo.InvariantCulture)) != 0)
            throw new IOException($"cannot give {path} to the jail's user {User}: errno {System.Runtime.InteropServices.Marshal.GetLastPInvokeError()}");
    }
}
