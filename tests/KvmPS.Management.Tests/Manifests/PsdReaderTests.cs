using System.Collections.Specialized;
using KvmPS.Management.Manifests;

namespace KvmPS.Management.Tests.Manifests;

public sealed class PsdReaderTests
{
    private static PsdValue Value(string expression) => PsdReader.ParseDataFile("@{ v = " + expression + " }")["v"];

    private static object? Plain(string expression) => Value(expression).ToPlainObject();

    [Fact]
    public void Hashtable_entries_keep_order_and_compare_keys_case_insensitively()
    {
        var table = PsdReader.ParseDataFile("@{ Zeta = 1; alpha = 2\n  Mid = 3 }");
        Assert.Equal(new[] { "Zeta", "alpha", "Mid" }, table.Keys);
        Assert.Equal(2, ((PsdNumber)table["ALPHA"]).Value);
        Assert.True(table.ContainsKey("zeta"));
        var plain = (OrderedDictionary)table.ToPlainObject()!;
        Assert.Equal(3, plain["mid"]);
    }

    [Fact]
    public void Keys_may_be_bare_words_quoted_strings_or_numbers()
    {
        var table = PsdReader.ParseDataFile("@{ bare-word.x = 1; 'single q' = 2; \"double q\" = 3; 42 = 4; 0x10 = 5 }");
        Assert.Equal(new[] { "bare-word.x", "single q", "double q", "42", "16" }, table.Keys);
    }

    [Fact]
    public void Separators_may_be_newlines_semicolons_or_both_and_empty_tables_are_fine()
    {
        var table = PsdReader.ParseDataFile("@{\r\n\r\n a = 1;\n;; b = 2\n\n c = @{} ; }");
        Assert.Equal(3, table.Count);
        Assert.Empty((PsdHashtable)table["c"]);
    }

    [Fact]
    public void Nested_hashtables_and_arrays()
    {
        var table = PsdReader.ParseDataFile("""
            @{
                Boot = @{ KernelPath = '/k'; Cmdline = 'console=ttyS0' }
                Disks = @(
                    @{ Path = 'a.raw'; SizeBytes = 1GB }
                    @{ Path = 'b.raw' }
                )
            }
            """);
        var boot = (PsdHashtable)table["boot"];
        Assert.Equal("/k", ((PsdString)boot["kernelpath"]).Value);
        var disks = (PsdArray)table["Disks"];
        Assert.Equal(2, disks.Count);
        Assert.Equal(1073741824, ((PsdNumber)((PsdHashtable)disks[0])["SizeBytes"]).Value);
    }

    [Theory]
    [InlineData("@(1, 2, 3)")]
    [InlineData("@(1\n2\n3)")]
    [InlineData("@(\n  1,\n  2\n  3\n)")]
    [InlineData("@(1, 2; 3)")]
    [InlineData("1, 2, 3")]
    [InlineData("1,\n 2,\n 3")]
    [InlineData("@(@(1, 2, 3))")]
    [InlineData("@(@(1, 2)\n 3)")]
    [InlineData("(1, 2, 3)")]
    public void Array_forms(string expression) =>
        Assert.Equal(new object?[] { 1, 2, 3 }, (object?[])Plain(expression)!);

    [Fact]
    public void Array_expression_unrolls_statements_like_powershell()
    {
        // Each statement's output is enumerated: @(1,2) as a statement unrolls, but inside a comma list it stays nested.
        Assert.Equal(new object?[] { 1, 2, 3 }, (object?[])Plain("@(@(1, 2); 3)")!);
        Assert.Equal(2, ((object?[])Plain("@(@(1, 2), 3)")!).Length);
        Assert.Equal(new object?[] { 1, 2, 3 }, (object?[])Plain("@(1, 2; 3)")!);
        Assert.Empty((object?[])Plain("@()")!);
        Assert.Empty((object?[])Plain("@(\n)")!);
        // A unary comma keeps the inner array as one element.
        var nested = (object?[])Plain("@(,(1, 2))")!;
        Assert.Single(nested);
        Assert.Equal(new object?[] { 1, 2 }, (object?[])nested[0]!);
        // A bare comma list keeps nested arrays nested.
        var list = (object?[])Plain("1, @(2, 3)")!;
        Assert.Equal(2, list.Length);
    }

    [Fact]
    public void Unary_comma_makes_a_single_element_array()
    {
        var array = (PsdArray)Value(",'only'");
        Assert.Equal("only", ((PsdString)array[0]).Value);
    }

    [Theory]
    [InlineData("'plain'", "plain")]
    [InlineData("'it''s'", "it's")]
    [InlineData("''", "")]
    [InlineData("'no $expansion `n here'", "no $expansion `n here")]
    [InlineData("\"tab`tnew`nline\"", "tab\tnew\nline")]
    [InlineData("\"q`\"uote and \"\"double\"\"\"", "q\"uote and \"double\"")]
    [InlineData("\"tick `` dollar `$HOME\"", "tick ` dollar $HOME")]
    [InlineData("\"nul`0 bell`a bs`b esc`e ff`f cr`r vt`v\"", "nul\0 bell\a bs\b esc\u001b ff\f cr\r vt\v")]
    [InlineData("\"`u{1F600} `u{41}\"", "\U0001F600 A")]
    [InlineData("\"lone $ and $ at end $\"", "lone $ and $ at end $")]
    [InlineData("\"unknown `q escape\"", "unknown q escape")]
    [InlineData("\u2018smart\u2019", "smart")]
    [InlineData("\u201Csmart\u201D", "smart")]
    public void String_literals(string expression, string expected) =>
        Assert.Equal(expected, ((PsdString)Value(expression)).Value);

    [Fact]
    public void Single_quoted_here_string_is_verbatim()
    {
        var text = "@{ v = @'  \nline 1 $x `n\n  'quoted' \"@ '@ inside\n'@ }";
        Assert.Equal("line 1 $x `n\n  'quoted' \"@ '@ inside", ((PsdString)PsdReader.ParseDataFile(text)["v"]).Value);
    }

    [Fact]
    public void Double_quoted_here_string_processes_escapes_and_keeps_quotes()
    {
        var text = "@{ v = @\"\nsay \"hi\" `$x`tand ''\n\"@\n}";
        Assert.Equal("say \"hi\" $x\tand ''", ((PsdString)PsdReader.ParseDataFile(text)["v"]).Value);
    }

    [Fact]
    public void Here_string_edge_cases()
    {
        Assert.Equal("", ((PsdString)PsdReader.ParseDataFile("@{ v = @'\n'@ }")["v"]).Value);
        Assert.Equal("", ((PsdString)PsdReader.ParseDataFile("@{ v = @'\n\n'@ }")["v"]).Value);
        Assert.Equal("a\r\nb", ((PsdString)PsdReader.ParseDataFile("@{ v = @'\r\na\r\nb\r\n'@ }")["v"]).Value);
        // An escaped final line break in an expandable here-string is content; the raw one before "@ is not.
        Assert.Equal("a\n", ((PsdString)PsdReader.ParseDataFile("@{ v = @\"\na`n\n\"@ }")["v"]).Value);
    }

    [Theory]
    [InlineData("42", 42)]
    [InlineData("-42", -42)]
    [InlineData("+7", 7)]
    [InlineData("0x1F", 31)]
    [InlineData("0xFFFFFFFF", -1)]
    [InlineData("-0x10", -16)]
    [InlineData("2147483647", 2147483647)]
    [InlineData("1kb", 1024)]
    [InlineData("512MB", 536870912)]
    [InlineData("1GB", 1073741824)]
    [InlineData("0x10kb", 16384)]
    public void Int32_literals(string expression, int expected)
    {
        var number = (PsdNumber)Value(expression);
        Assert.Equal(expected, Assert.IsType<int>(number.Value));
    }

    [Theory]
    [InlineData("2147483648", 2147483648L)]
    [InlineData("2GB", 2147483648L)]
    [InlineData("1TB", 1099511627776L)]
    [InlineData("1pb", 1125899906842624L)]
    [InlineData("5L", 5L)]
    [InlineData("5lkb", 5120L)]
    [InlineData("0x1FL", 31L)]
    [InlineData("0x100000000", 4294967296L)]
    [InlineData("-9223372036854775808", long.MinValue)]
    public void Int64_literals(string expression, long expected) =>
        Assert.Equal(expected, Assert.IsType<long>(((PsdNumber)Value(expression)).Value));

    [Theory]
    [InlineData("1.5", 1.5)]
    [InlineData(".5", 0.5)]
    [InlineData("-2.25", -2.25)]
    [InlineData("1e3", 1000.0)]
    [InlineData("1.5E-2", 0.015)]
    [InlineData("1.5GB", 1610612736.0)]
    [InlineData("0.5kb", 512.0)]
    public void Double_literals(string expression, double expected) =>
        Assert.Equal(expected, Assert.IsType<double>(((PsdNumber)Value(expression)).Value));

    [Fact]
    public void Decimal_suffix_and_large_integers()
    {
        Assert.Equal(1.5m, Assert.IsType<decimal>(((PsdNumber)Value("1.5d")).Value));
        Assert.Equal(10m, Assert.IsType<decimal>(((PsdNumber)Value("10D")).Value));
        Assert.Equal(9223372036854775808m, Assert.IsType<decimal>(((PsdNumber)Value("9223372036854775808")).Value));
        Assert.IsType<double>(((PsdNumber)Value("1" + new string('0', 40))).Value);
    }

    [Fact]
    public void Number_accessors()
    {
        Assert.True(((PsdNumber)Value("1.5GB")).TryGetInt64(out var bytes));
        Assert.Equal(1610612736L, bytes);
        Assert.False(((PsdNumber)Value("1.25")).TryGetInt64(out _));
        Assert.False(((PsdNumber)Value("-1")).TryGetUInt64(out _));
        Assert.True(((PsdNumber)Value("[uint64]'18446744073709551615'")).TryGetUInt64(out var max));
        Assert.Equal(ulong.MaxValue, max);
    }

    [Fact]
    public void Booleans_and_null_are_case_insensitive()
    {
        Assert.True(((PsdBoolean)Value("$true")).Value);
        Assert.False(((PsdBoolean)Value("$FALSE")).Value);
        Assert.IsType<PsdNull>(Value("$Null"));
        Assert.Null(Plain("$null"));
    }

    [Fact]
    public void Comments_are_ignored_everywhere()
    {
        var table = PsdReader.ParseDataFile("""
            # leading comment
            <# block
               comment #>
            @{ # after brace
                a = 1 # trailing
                <# before key #> b = <# before value #> 'x' <# after value #>
                c = @( # in array
                    1 # one
                    <# two #> 2
                )
            } # after
            """);
        Assert.Equal(new[] { "a", "b", "c" }, table.Keys);
        Assert.Equal(new object?[] { 1, 2 }, (object?[])table["c"].ToPlainObject()!);
    }

    [Fact]
    public void Backtick_continues_a_line()
    {
        var table = PsdReader.ParseDataFile("@{ a = `\n 5 }");
        Assert.Equal(5, ((PsdNumber)table["a"]).Value);
    }

    [Theory]
    [InlineData("[int]'42'", 42)]
    [InlineData("[int] '0x10'", 16)]
    [InlineData("[int]'1kb'", 1024)]
    [InlineData("[int]2.5", 2)]
    [InlineData("[int]3.5", 4)]
    [InlineData("[Int32]$true", 1)]
    [InlineData("[int]$null", 0)]
    [InlineData("[System.Int32]' 7 '", 7)]
    public void Int_casts(string expression, int expected) =>
        Assert.Equal(expected, Assert.IsType<int>(((PsdNumber)Value(expression)).Value));

    [Fact]
    public void Other_primitive_casts()
    {
        Assert.Equal(5L, Assert.IsType<long>(((PsdNumber)Value("[long]5")).Value));
        Assert.Equal(7u, Assert.IsType<uint>(((PsdNumber)Value("[uint32]'7'")).Value));
        Assert.Equal(8UL, Assert.IsType<ulong>(((PsdNumber)Value("[uint64]8")).Value));
        Assert.Equal((byte)255, Assert.IsType<byte>(((PsdNumber)Value("[byte]255")).Value));
        Assert.Equal(2.0, Assert.IsType<double>(((PsdNumber)Value("[double]'2'")).Value));
        Assert.Equal("42", ((PsdString)Value("[string]42")).Value);
        Assert.Equal("1.5", ((PsdString)Value("[string]1.5")).Value);
        Assert.Equal("True", ((PsdString)Value("[string]$true")).Value);
        Assert.Equal("", ((PsdString)Value("[string]$null")).Value);
        Assert.Equal("1 2", ((PsdString)Value("[string]@(1, 2)")).Value);
        Assert.True(((PsdBoolean)Value("[bool]'false'")).Value); // PowerShell: any non-empty string is true
        Assert.False(((PsdBoolean)Value("[bool]''")).Value);
        Assert.False(((PsdBoolean)Value("[bool]0")).Value);
        Assert.True(((PsdBoolean)Value("[Boolean]1")).Value);
        Assert.Equal(5, ((PsdNumber)Value("[int][string]5")).Value);
    }

    [Fact]
    public void Cast_binds_tighter_than_comma()
    {
        var array = (object?[])Plain("[string]1, 2")!;
        Assert.Equal(new object?[] { "1", 2 }, array);
    }

    [Fact]
    public void Positions_are_kept_for_keys_and_values()
    {
        var table = PsdReader.ParseDataFile("@{\n  Name = 'web'\n  Disks = @(\n    @{ Format = 'qcow2' }\n  )\n}", "vm.psd1");
        var name = table.Entries[0];
        Assert.Equal(new SourcePosition("vm.psd1", 2, 3), name.KeyPosition);
        Assert.Equal(new SourcePosition("vm.psd1", 2, 10), name.Value.Position);
        var disk = (PsdHashtable)((PsdArray)table["Disks"])[0];
        Assert.Equal(new SourcePosition("vm.psd1", 4, 5), disk.Position);
        Assert.True(disk.TryGetEntry("format", out var format));
        Assert.Equal("vm.psd1:4:8", format.KeyPosition.ToString());
        Assert.Equal(new SourcePosition("vm.psd1", 4, 17), format.Value.Position);
        Assert.Equal(new SourcePosition("vm.psd1", 1, 1), table.Position);
    }

    [Fact]
    public void Byte_order_mark_does_not_shift_columns()
    {
        var error = Assert.Throws<ManifestParseException>(() => PsdReader.ParseDataFile("\uFEFF@{ a = $x }", "f"));
        Assert.Equal((1, 8), (error.Line, error.Column));
    }

    [Fact]
    public void Reads_a_realistic_manifest_file()
    {
        var path = Path.Combine(Path.GetTempPath(), $"kvmps-{Guid.NewGuid():N}.psd1");
        File.WriteAllText(path, """
            @{
                Name              = 'web-01'
                MemoryStartupBytes = 1GB
                MemoryMaximumBytes = 4GB
                VcpuCount         = 2
                Autostart         = $true
                Notes             = @'
            Front-end web server.
            Owner: ops
            '@
                NetworkAdapters   = @(
                    @{ Bridge = 'br0' }
                )
                PciPassthrough    = '0000:01:00.0', '0000:01:00.1'
            }
            """);
        try
        {
            var table = PsdReader.ReadDataFile(path);
            Assert.Equal("web-01", ((PsdString)table["name"]).Value);
            Assert.Equal(4294967296L, ((PsdNumber)table["MemoryMaximumBytes"]).Value);
            Assert.Equal("Front-end web server.\nOwner: ops", ((PsdString)table["Notes"]).Value.ReplaceLineEndings("\n"));
            Assert.Equal(2, ((PsdArray)table["PciPassthrough"]).Count);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void ParseValue_reads_a_single_value()
    {
        Assert.Equal(536870912, ((PsdNumber)PsdReader.ParseValue("512MB")).Value);
        Assert.Throws<ManifestParseException>(() => PsdReader.ParseValue("512MB extra"));
    }
}
