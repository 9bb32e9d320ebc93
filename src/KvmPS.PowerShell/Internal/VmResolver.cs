using KvmPS.Management.Selection;

namespace KvmPS.PowerShell.Internal;

/// <summary>
/// The -Name / -Vm parameter-set resolution shared by every VM cmdlet: which VMs an invocation targets and which
/// requested names do not exist. -Vm objects select by name (the object is a snapshot; the VM is re-read).
/// </summary>
internal static class VmResolver
{
    /// <param name="existing">Names of the VMs in the store.</param>
    /// <param name="names">-Name: names or wildcards (null when the Vm parameter set is used).</param>
    /// <param name="vms">-Vm: piped VM objects (null when the Name parameter set is used).</param>
    /// <param name="allWhenEmpty">Get-KvmVm without -Name lists every VM; others need a selection.</param>
    public static VmSelection Resolve(IReadOnlyList<string> existing, string[]? names, KvmVm[]? vms, bool allWhenEmpty = false)
    {
        ArgumentNullException.ThrowIfNull(existing);
        if (vms is not null)
        {
            var selected = new List<string>();
            var missing = new List<string>();
            foreach (var vm in vms)
            {
                if (vm is null)
                    continue;
                if (!existing.Contains(vm.Name, StringComparer.Ordinal))
                    missing.Add(vm.Name);
                else if (!selected.Contains(vm.Name, StringComparer.Ordinal))
                    selected.Add(vm.Name);
            }
            return new VmSelection(selected, missing);
        }
        if (names is null || names.Length == 0)
            return allWhenEmpty ? VmSelector.Select(existing, null) : new VmSelection(Array.Empty<string>(), Array.Empty<string>());
        // Escape names that are not valid wildcard patterns ('[' without ']') rather than failing the whole call.
        return VmSelector.Select(existing, names.Select(SafePattern));
    }

    private static string SafePattern(string text)
    {
        try
        {
            _ = new VmNamePattern(text);
            return text;
        }
        catch (ArgumentException)
        {
            return text.Replace("`", "``", StringComparison.Ordinal).Replace("[", "`[", StringComparison.Ordinal);
        }
    }
}
