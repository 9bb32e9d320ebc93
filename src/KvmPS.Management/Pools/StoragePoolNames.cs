using System.Text.RegularExpressions;

namespace KvmPS.Management.Pools;

/// <summary>
/// Pool and volume names. A pool name is a file name in the store (<c>pools/&lt;name&gt;.pool.json</c>): 1-63 letters,
/// digits, '.', '_', '-', starting with a letter or digit (as VM names). A volume name is a file name inside the pool
/// folder: no '/', not '.' or '..', not hidden (a leading '.' is for KvmPS's own temp files), no NUL or control
/// characters, at most 255 bytes.
/// </summary>
public static partial class StoragePoolNames
{
    /// <summary>The pool that exists out of the box, at <c>&lt;store&gt;/pools/default</c>.</summary>
    public const string DefaultPool = "default";

    [GeneratedRegex(@"\A[A-Za-z0-9][A-Za-z0-9._-]{0,62}\z")]
    private static partial Regex PoolPattern();

    public static bool IsValidPool(string? name) => name is not null && PoolPattern().IsMatch(name);

    /// <summary>Throws <see cref="StoragePoolSettingException"/> (property Name) for an invalid pool name.</summary>
    public static string ValidatePool(string? name)
    {
        if (!IsValidPool(name))
            throw new StoragePoolSettingException(name ?? "", "Name", Display(name ?? ""), "is not a valid pool name: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit");
        return name!;
    }

    /// <summary>Why <paramref name="name"/> is not a valid volume name, or null if it is.</summary>
    public static string? VolumeNameProblem(string? name)
    {
        if (string.IsNullOrEmpty(name))
            return "is empty";
        if (name.Contains('/'))
            return "contains '/': a volume is a file directly in the pool folder";
        if (name is "." or "..")
            return "is '.' or '..'";
        if (name.StartsWith('.'))
            return "starts with '.' (names starting with '.' are KvmPS's own temporary files)";
        if (name.Any(char.IsControl))
            return "contains control characters";
        if (System.Text.Encoding.UTF8.GetByteCount(name) > 255)
            return "is longer than 255 bytes";
        return null;
    }

    /// <summary>Throws <see cref="StorageVolumeSettingException"/> (property Name) for an invalid volume name.</summary>
    public static string ValidateVolume(string poolName, string? name, string property = "Name")
    {
        if (VolumeNameProblem(name) is { } problem)
            throw new StorageVolumeSettingException(poolName, Display(name ?? ""), property, $"'{Display(name ?? "")}' {problem}");
        return name!;
    }

    private static string Display(string name) => KvmPS.Management.Definitions.VmName.ForDisplay(name);
}
