using System.Collections;
using KvmPS.Management.DesiredState;
using KvmPS.Management.Manifests;
using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Management.Tests.Manifests;

/// <summary>
/// Nesting deeper than <see cref="PsdReader.MaxNestingDepth"/> is a clean parse error naming file, line, column and
/// the limit. Regression: 10,000 levels overflowed the stack and killed the process (kvmps, and any pwsh that had
/// loaded the module), which no catch can stop; this test process surviving is part of the test.
/// </summary>
public sealed class DeepNestingTests : IDisposable
{
    private const int Levels = 10_000;
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>(kind, opener, closer, leaf): the text is opener×N + leaf + closer×N inside a data-file hashtable.</summary>
    public static TheoryData<string, string, string> Kinds => new()
    {
        { "@{a=", "}", "1" },
        { "@(", ")", "1" },
        { "(", ")", "1" },
        { ",(", ")", "1" },
        { "[string]", "", "1" },
        { "@(@{a=(", ")})", "1" },
    };

    private static string Nested(string opener, string closer, string leaf, int levels) =>
        "@{ x = " + string.Concat(Enumerable.Repeat(opener, levels)) + leaf + string.Concat(Enumerable.Repeat(closer, levels)) + " }";

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Ten_thousand_levels_are_rejected_with_file_line_column_and_the_limit(string opener, string closer, string leaf)
    {
        var error = Assert.Throws<ManifestParseException>(() => PsdReader.ParseDataFile(Nested(opener, closer, leaf, Levels), "deep.psd1"));
        Assert.Equal("deep.psd1", error.File);
        Assert.Equal(1, error.Line);
        Assert.True(error.Column > 1);
        Assert.Contains($"{PsdReader.MaxNestingDepth}", error.Reason);
        Assert.StartsWith($"deep.psd1:1:{error.Column}: ", error.Message);
        Assert.Contains("nested", error.Reason);
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Nesting_up_to_the_limit_is_accepted(string opener, string closer, string leaf)
    {
        // The outer data-file hashtable is one level; the value may use the rest. A combined opener counts each part.
        var perRepeat = opener switch { "@(@{a=(" => 3, ",(" => 2, _ => 1 };
        var repeats = (PsdReader.MaxNestingDepth - 1) / perRepeat;
        PsdReader.ParseDataFile(Nested(opener, closer, leaf, repeats), "ok.psd1");
        Assert.Throws<ManifestParseException>(() => PsdReader.ParseDataFile(Nested(opener, closer, leaf, repeats + 1), "ok.psd1"));
    }

    [Fact]
    public void The_error_points_at_the_first_opener_beyond_the_limit()
    {
        var text = "@{\n  x = " + string.Concat(Enumerable.Repeat("@(", Levels)) + string.Concat(Enumerable.Repeat(")", Levels)) + "\n}";
        var error = Assert.Throws<ManifestParseException>(() => PsdReader.ParseDataFile(text, "m.psd1"));
        Assert.Equal(2, error.Line);
        // "  x = " is 6 columns; the outer '@{' is level 1, so the opener at level limit+1 is the limit-th '@('.
        Assert.Equal(7 + 2 * (PsdReader.MaxNestingDepth - 1), error.Column);
    }

    [Fact]
    public void A_deep_manifest_file_fails_as_a_desired_state_error_naming_the_file()
    {
        var path = Path.Combine(_dir.Path, "deep.psd1");
        File.WriteAllText(path, Nested("@{a=", "}", "1", Levels));
        var error = Assert.Throws<DesiredStateException>(() => DesiredStateReader.ReadFiles(new[] { path }));
        Assert.Contains("deep.psd1:1:", error.Message);
        Assert.Contains($"{PsdReader.MaxNestingDepth}", error.Message);
    }

    [Fact]
    public void Deep_and_self_referencing_dictionaries_from_powershell_are_rejected()
    {
        IDictionary deep = new Hashtable { ["a"] = 1 };
        for (var i = 0; i < Levels; i++)
            deep = new Hashtable { ["a"] = deep };
        var input = new Hashtable { ["Name"] = "vm1", ["Notes"] = deep };
        var error = Assert.Throws<DesiredStateException>(() => DesiredStateReader.FromDictionary(input, "<dsc>"));
        Assert.Contains($"{PsdReader.MaxNestingDepth}", error.Message);
        Assert.Contains("<dsc>", error.Message);

        var loop = new Hashtable { ["Name"] = "vm1" };
        loop["Self"] = loop;
        Assert.Throws<DesiredStateException>(() => DesiredStateReader.FromDictionary(loop, "<dsc>"));

        var list = new ArrayList();
        list.Add(list);
        Assert.Throws<DesiredStateException>(() => DesiredStateReader.FromDictionary(new Hashtable { ["Name"] = "vm1", ["Disks"] = list }, "<dsc>"));
    }
}
