using System.Text.RegularExpressions;

namespace KvmPS.Management.Definitions;

/// <summary>
/// VM names: 1-63 characters of letters, digits, '.', '_' and '-', starting with a letter or digit.
/// The name is also a directory name in the store, so the rule keeps out '/', "..", hidden names
/// (the store's own temp folders start with '.') and anything needing shell quoting.
/// </summary>
public static partial class VmName
{
    public const int MaximumLength = 63;

    // \z, not $: in .NET $ also matches before a final newline, which let "vm1\n" through.
    [GeneratedRegex(@"\A[A-Za-z0-9][A-Za-z0-9._-]{0,62}\z")]
    private static partial Regex Pattern();

    public static bool IsValid(string? name) => name is not null && Pattern().IsMatch(name);

    /// <summary>Throws <see cref="VmDefinitionException"/> (property <c>Name</c>) for an invalid name.</summary>
    public static string Validate(string? name)
    {
        if (!IsValid(name))
            throw new VmDefinitionException(name ?? "", "Name",
                "must be 1-63 characters of letters, digits, '.', '_' or '-', starting with a letter or digit");
        return name!;
    }
}
