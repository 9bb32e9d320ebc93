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

    [GeneratedRegex(@"\A[A-Za-z0-9][A-Za-z0-9._-]{0,62}\z")] // \z, not $: $ also matches before a final \n
    private static partial Regex Pattern();

    public static bool IsValid(string? name) => name is not null && Pattern().IsMatch(name);

    /// <summary>
    /// <paramref name="name"/> for a message: control characters shown as escapes (<c>\n</c>, <c>\x00</c>), so a
    /// rejected "vm1\n" reads as <c>vm1\n</c> instead of breaking the line.
    /// </summary>
    public static string ForDisplay(string name)
    {
        if (!name.Any(char.IsControl))
            return name;
        var text = new System.Text.StringBuilder(name.Length + 8);
        foreach (var c in name)
            text.Append(c switch
            {
                '\n' => "\\n",
                '\r' => "\\r",
                '\t' => "\\t",
                _ when char.IsControl(c) => $"\\x{(int)c:x2}",
                _ => c.ToString(),
            });
        return text.ToString();
    }

    /// <summary>Throws <see cref="VmDefinitionException"/> (property <c>Name</c>) for an invalid name.</summary>
    public static string Validate(string? name)
    {
        if (!IsValid(name))
            throw new VmDefinitionException(name ?? "", "Name",
                "must be 1-63 characters of letters, digits, '.', '_' or '-', starting with a letter or digit");
        return name!;
    }
}
