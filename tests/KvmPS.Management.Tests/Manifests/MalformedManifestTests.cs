using KvmPS.Management.Manifests;

namespace KvmPS.Management.Tests.Manifests;

/// <summary>Every malformed manifest must fail with a useful message AND the exact line:column.</summary>
public sealed class MalformedManifestTests
{
    public static TheoryData<string, int, int, string> Corpus => new()
    {
        { "@{ a = Get-Date }", 1, 8, "Commands are not allowed in a data file: 'Get-Date'" },
        { "@{ a = $env:HOME }", 1, 8, "Variables are not allowed in a data file (only $true, $false and $null): '$env:HOME'" },
        { "@{ a = $foo }", 1, 8, "'$foo'" },
        { "@{ a = ${foo bar} }", 1, 8, "'${foo bar}'" },
        // Unclosed '${': found by fuzzing (docs/fuzzing.md), it threw ArgumentOutOfRangeException at the end of the text.
        { "@{ a = ${foo", 1, 8, "'${foo'" },
        { "@{ a = ${foo\n}", 1, 8, "'${foo'" },
        { "${", 1, 1, "'${'" },
        { "@{ a = 1 + 2 }", 1, 10, "Operator '+' is not allowed" },
        { "@{ a = 1-2 }", 1, 9, "Operator '-' is not allowed" },
        { "@{ a = 1..3 }", 1, 9, "Operator '..' is not allowed" },
        { "@{ a = -not $true }", 1, 8, "Operator '-not' is not allowed" },
        { "@{ a = 'x' -join ',' }", 1, 12, "Operator '-join' is not allowed" },
        { "@{ a = $(1) }", 1, 8, "Subexpressions '$(...)' are not allowed" },
        { "@{ a = { 1 } }", 1, 8, "Script blocks '{ ... }' are not allowed" },
        { "@{ a = 'abc'.Length }", 1, 13, "Member access and method calls are not allowed" },
        { "@{ a = 'abc'.ToUpper() }", 1, 13, "Member access and method calls are not allowed" },
        { "@{ a = 'x'[0] }", 1, 11, "Indexing '[...]' is not allowed" },
        { "@{ a = [int]::MaxValue }", 1, 13, "Static member access '[int]::' is not allowed" },
        { "@{ a = [datetime]'2020-01-01' }", 1, 8, "Type '[datetime]' is not allowed in a data file" },
        { "@{ a = [int[]]@(1) }", 1, 8, "Type '[int[]]' is not allowed" },
        { "[ordered]@{ a = 1 }", 1, 1, "[ordered] is not allowed in a data file" },
        { "@{ a = [int] }", 1, 8, "A cast '[int]' must be followed by a value" },
        { "@{ a = [int]'abc' }", 1, 8, "Cannot convert 'abc' to [int]" },
        { "@{ a = [byte]300 }", 1, 8, "Cannot convert 300 to [byte]: the value is out of range" },
        { "@{ a = \"hello $name\" }", 1, 15, "Variable expansion '$name' is not allowed" },
        { "@{ a = \"v=$true\" }", 1, 11, "Variable expansion '$true' is not allowed" },
        { "@{ a = \"x ${foo}\" }", 1, 11, "Variable expansion '${foo}' is not allowed" },
        { "@{ a = \"x $(Get-Date)\" }", 1, 11, "Subexpressions '$(...)' are not allowed in a data file string" },
        { "@{ a = \"`u{110000}\" }", 1, 10, "Invalid Unicode escape" },
        { "@{ a = 'unterminated }", 1, 8, "The string is missing its terminator: '" },
        { "@{ a = \"unterminated }", 1, 8, "The string is missing its terminator: \"" },
        { "@{ a = @'text\n'@ }", 1, 10, "No characters are allowed after a here-string header" },
        { "@{ a = @'\nline\n  '@\n}", 3, 3, "White space is not allowed before the here-string terminator" },
        { "@{ a = @'\nline\n}", 1, 8, "The here-string is missing its terminator: '@" },
        { "@{ a = @\"\nline $x\n\"@\n}", 2, 6, "Variable expansion '$x' is not allowed" },
        { "@{ a = 12abc }", 1, 8, "'12abc' is not a valid number" },
        { "@{ a = 512MBx }", 1, 8, "'512MBx' is not a valid number" },
        { "@{ a = 9223372036854775808L }", 1, 8, "The numeric constant '9223372036854775808L' is out of range" },
        { "@{ a = 1", 1, 9, "Missing closing '}' for the hashtable that starts at 1:1" },
        { "@{\n  a = 1\n", 3, 1, "Missing closing '}' for the hashtable that starts at 1:1" },
        { "@{ a 1 }", 1, 6, "Missing '=' after hashtable key 'a'" },
        { "@{ a\n= 1 }", 1, 5, "Missing '=' after hashtable key 'a'" },
        { "@{ a = }", 1, 8, "Missing value after '=' for hashtable key 'a'" },
        { "@{ a = 1; A = 2 }", 1, 11, "Duplicate key 'A' in hashtable (keys are case-insensitive; first defined at 1:4)" },
        { "@{ a = 1 b = 2 }", 1, 10, "Unexpected token 'b'; expected ';', a line break or '}'" },
        { "@{ (1) = 2 }", 1, 4, "Expected a hashtable key" },
        { "@{ a = @(1, Get-Date) }", 1, 13, "Commands are not allowed in a data file: 'Get-Date'" },
        { "@{ a = @(1 }", 1, 12, "Unexpected token '}'; expected ',', ';', a line break or ')' in an array" },
        { "@{ a = (1 }", 1, 11, "Unexpected token '}'; expected ')'" },
        { "@{ a = 1, }", 1, 11, "Missing expression after ','" },
        { "@{ a = @foo }", 1, 8, "splatting is not allowed" },
        { "@{ a = true }", 1, 8, "'true' (did you mean $true?)" },
        { "@{ a = if ($x) { 1 } }", 1, 8, "Statements ('if') are not allowed" },
        { "<# unterminated\n@{}", 1, 1, "Missing the end of the block comment '#>'" },
        { "", 1, 1, "The data file is empty" },
        { "# only a comment\n", 2, 1, "The data file is empty" },
        { "'just a string'", 1, 1, "A data file must contain a single hashtable '@{ ... }', not a string" },
        { "@{ a = 1 }, @{ b = 2 }", 1, 1, "not an array" },
        { "@{ a = 1 }\n@{ b = 2 }", 2, 1, "Unexpected token '@'" },
        { "@{\n  Name = 'web'\n  Memory = $mem\n}", 3, 12, "'$mem'" },
        { "@{\r\n  Name = 'web'\r\n  Cpus = & 'x'\r\n}", 3, 10, "Operator '&' is not allowed" },
    };

    [Theory]
    [MemberData(nameof(Corpus))]
    public void Rejects_with_message_and_position(string text, int line, int column, string message)
    {
        var error = Assert.Throws<ManifestParseException>(() => PsdReader.ParseDataFile(text, "vm.psd1"));
        Assert.Contains(message, error.Reason);
        Assert.Equal((line, column), (error.Line, error.Column));
        Assert.Equal("vm.psd1", error.File);
        Assert.StartsWith($"vm.psd1:{line}:{column}: ", error.Message);
    }

    [Fact]
    public void Corpus_is_large_enough() => Assert.True(Corpus.Count >= 30);

    [Fact]
    public void Malformed_files_on_disk_report_their_path()
    {
        var dir = Path.Combine(AppContext.BaseDirectory, "Manifests", "Malformed");
        var files = Directory.GetFiles(dir, "*.psd1");
        Assert.NotEmpty(files);
        foreach (var file in files)
        {
            // First line of each corpus file: "# expect: line:column: message substring"
            var header = File.ReadLines(file).First();
            var spec = header["# expect: ".Length..];
            var parts = spec.Split(':', 3);
            var error = Assert.Throws<ManifestParseException>(() => PsdReader.ReadDataFile(file));
            Assert.Equal(file, error.File);
            Assert.True((int.Parse(parts[0]), int.Parse(parts[1])) == (error.Line, error.Column),
                $"{Path.GetFileName(file)}: expected {parts[0]}:{parts[1]}, got {error.Message}");
            Assert.Contains(parts[2].Trim(), error.Reason);
        }
    }
}
