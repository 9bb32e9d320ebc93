namespace KvmPS.Management.Selection;

/// <summary>What <see cref="VmSelector.Select"/> found.</summary>
/// <param name="Names">Matched VM names, each once, in the order of the patterns (then store order within a wildcard).</param>
/// <param name="NotFound">Patterns without wildcards that named no VM: the caller reports each as "VM not found".</param>
public sealed record VmSelection(IReadOnlyList<string> Names, IReadOnlyList<string> NotFound);

/// <summary>
/// Resolves names and wildcards to VM names, with PowerShell's conventions: a wildcard that matches nothing is
/// silently empty, a plain name that matches nothing is an error, and a VM matched twice is returned once.
/// A plain name first matches exactly (VM names are case-sensitive in the store), then case-insensitively if
/// that identifies exactly one VM.
/// </summary>
public static class VmSelector
{
    /// <param name="existing">All VM names (e.g. <c>VmStore.ListNames()</c>).</param>
    /// <param name="patterns">Names or wildcards; null or empty selects every VM.</param>
    public static VmSelection Select(IReadOnlyList<string> existing, IEnumerable<string>? patterns)
    {
        ArgumentNullException.ThrowIfNull(existing);
        var list = patterns?.Where(p => p is not null).ToList();
        if (list is null || list.Count == 0)
            return new VmSelection(existing.Distinct(StringComparer.Ordinal).ToList(), Array.Empty<string>());

        var names = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var notFound = new List<string>();
        foreach (var text in list)
        {
            var pattern = new VmNamePattern(text);
            if (!pattern.HasWildcards)
            {
                var literal = VmNamePattern.Unescape(text);
                var exact = existing.FirstOrDefault(n => string.Equals(n, literal, StringComparison.Ordinal));
                if (exact is null)
                {
                    var folded = existing.Where(n => string.Equals(n, literal, StringComparison.OrdinalIgnoreCase)).Distinct(StringComparer.Ordinal).ToList();
                    exact = folded.Count == 1 ? folded[0] : null;
                }
                if (exact is null)
                    notFound.Add(literal);
                else if (seen.Add(exact))
                    names.Add(exact);
                continue;
            }
            foreach (var name in existing)
                if (pattern.IsMatch(name) && seen.Add(name))
                    names.Add(name);
        }
        return new VmSelection(names, notFound);
    }
}
