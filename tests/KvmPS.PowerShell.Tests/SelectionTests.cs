using KvmPS.Management.Selection;
using KvmPS.PowerShell.Completers;
using KvmPS.PowerShell.Internal;

namespace KvmPS.PowerShell.Tests;

public class SelectionTests
{
    private static readonly string[] Vms = { "db1", "web-1", "web-2", "Web3", "we[b]x" };

    [Theory]
    [InlineData("web*", "web-1", true)]
    [InlineData("web*", "Web3", true)]
    [InlineData("WEB-?", "web-2", true)]
    [InlineData("web-?", "web-10", false)]
    [InlineData("web-[12]", "web-2", true)]
    [InlineData("web-[a-c]", "web-b", true)]
    [InlineData("web-[a-c]", "web-d", false)]
    [InlineData("*", "", true)]
    [InlineData("*b*", "db1", true)]
    [InlineData("we`[b`]x", "we[b]x", true)]
    [InlineData("a*b*c", "aXbYc", true)]
    [InlineData("a*b*c", "aXbY", false)]
    public void Wildcards_match_like_PowerShell(string pattern, string name, bool expected) =>
        Assert.Equal(expected, new VmNamePattern(pattern).IsMatch(name));

    [Fact]
    public void Wildcard_detection_honours_escapes()
    {
        Assert.True(VmNamePattern.ContainsWildcards("web*"));
        Assert.False(VmNamePattern.ContainsWildcards("web"));
        Assert.False(VmNamePattern.ContainsWildcards("we`[b`]x"));
        Assert.Equal("we[b]x", VmNamePattern.Unescape("we`[b`]x"));
    }

    [Fact]
    public void Wildcards_select_in_store_order_without_duplicates_and_plain_names_must_exist()
    {
        var selection = VmSelector.Select(Vms, new[] { "web-*", "web-1", "nosuch", "zz*" });
        Assert.Equal(new[] { "web-1", "web-2" }, selection.Names);
        Assert.Equal(new[] { "nosuch" }, selection.NotFound);
    }

    [Fact]
    public void Plain_names_match_exactly_first_then_case_insensitively()
    {
        Assert.Equal(new[] { "Web3" }, VmSelector.Select(Vms, new[] { "web3" }).Names);
        var ambiguous = VmSelector.Select(new[] { "a", "A" }, new[] { "a" });
        Assert.Equal(new[] { "a" }, ambiguous.Names);
        var folded = VmSelector.Select(new[] { "c", "C", "d" }, new[] { "D", "c" });
        Assert.Equal(new[] { "d", "c" }, folded.Names);
        Assert.Empty(folded.NotFound);
    }

    [Fact]
    public void No_names_selects_all_only_for_Get()
    {
        Assert.Equal(Vms, VmResolver.Resolve(Vms, null, null, allWhenEmpty: true).Names);
        Assert.Empty(VmResolver.Resolve(Vms, null, null).Names);
    }

    [Fact]
    public void Vm_objects_select_by_name_and_report_removed_ones()
    {
        using var store = new TempStore();
        store.Manager.New(Definitions.Basic("web-1"));
        var vm = new KvmVm(store.Manager.Get("web-1"));
        var gone = new KvmVm(store.Manager.Get("web-1") with { Definition = Definitions.Basic("gone") });
        var selection = VmResolver.Resolve(store.Store.ListNames(), null, new[] { vm, vm, gone });
        Assert.Equal(new[] { "web-1" }, selection.Names);
        Assert.Equal(new[] { "gone" }, selection.NotFound);
    }

    [Fact]
    public void An_unbalanced_bracket_is_taken_literally()
    {
        var selection = VmResolver.Resolve(new[] { "a[1" }, new[] { "a[1" }, null);
        Assert.Equal(new[] { "a[1" }, selection.Names);
    }

    [Fact]
    public void Completer_offers_matching_names_and_keeps_quotes()
    {
        Assert.Equal(new[] { "web-1", "web-2", "Web3" }, VmNameCompleter.Complete(Vms, "we").Where(n => n != "we[b]x"));
        Assert.Equal(new[] { "'db1'" }, VmNameCompleter.Complete(Vms, "'d"));
        Assert.Equal(Vms.Length, VmNameCompleter.Complete(Vms, "").Count);
    }
}

internal static class Definitions
{
    public static KvmPS.Management.Definitions.VmDefinition Basic(string name, long memory = 64 * 1024 * 1024) => new()
    {
        Name = name,
        Memory = KvmPS.Management.Definitions.MemorySettings.Fixed(memory),
    };
}
