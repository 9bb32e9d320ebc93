using KvmPS.Management.Definitions;

namespace KvmPS.Management.Tests.Definitions;

public sealed class ValueParsingTests
{
    [Theory]
    [InlineData("0", 0L)]
    [InlineData("4096", 4096L)]
    [InlineData("512MB", 536870912L)]
    [InlineData("512mb", 536870912L)]
    [InlineData("512 MiB", 536870912L)]
    [InlineData("1GB", 1073741824L)]
    [InlineData("1.5GB", 1610612736L)]
    [InlineData("2KB", 2048L)]
    [InlineData(" 1TB ", 1099511627776L)]
    [InlineData("1PB", 1125899906842624L)]
    [InlineData("100B", 100L)]
    [InlineData(".5KB", 512L)]
    public void Size_strings(string text, long expected) => Assert.Equal(expected, SizeParser.ParseBytes(text));

    [Theory]
    [InlineData("", "expected a number of bytes")]
    [InlineData("abc", "expected a number of bytes")]
    [InlineData("-1GB", "expected a number of bytes")]
    [InlineData("1.3B", "not a whole number of bytes")]
    [InlineData("1 XB", "expected a number of bytes")]
    [InlineData("99999999PB", "too large")]
    public void Bad_size_strings(string text, string reason)
    {
        var error = Assert.Throws<ValueFormatException>(() => SizeParser.ParseBytes(text));
        Assert.Equal(text, error.Input);
        Assert.Equal("size", error.ValueKind);
        Assert.Contains(reason, error.Message);
    }

    [Fact]
    public void Sizes_from_values()
    {
        Assert.Equal(5L, SizeParser.FromValue(5));
        Assert.Equal(5L, SizeParser.FromValue(5L));
        Assert.Equal(5L, SizeParser.FromValue(5UL));
        Assert.Equal(1610612736L, SizeParser.FromValue(1610612736.0));
        Assert.Equal(7L, SizeParser.FromValue(7m));
        Assert.Equal(1024L, SizeParser.FromValue("1KB"));
        Assert.Throws<ValueFormatException>(() => SizeParser.FromValue(-1));
        Assert.Throws<ValueFormatException>(() => SizeParser.FromValue(1.5));
        Assert.Throws<ValueFormatException>(() => SizeParser.FromValue(null));
        Assert.Throws<ValueFormatException>(() => SizeParser.FromValue(true));
        Assert.Throws<ValueFormatException>(() => SizeParser.FromValue(ulong.MaxValue));
    }

    [Theory]
    [InlineData(536870912L, "512MB")]
    [InlineData(1073741824L, "1GB")]
    [InlineData(1000L, "1000B")]
    [InlineData(0L, "0B")]
    [InlineData(1536L, "1536B")]
    public void Size_formatting_is_exact(long bytes, string expected)
    {
        Assert.Equal(expected, SizeParser.Format(bytes));
        Assert.Equal(bytes, SizeParser.ParseBytes(SizeParser.Format(bytes)));
    }

    [Theory]
    [InlineData("52:54:00:AB:cd:ef", "52:54:00:ab:cd:ef")]
    [InlineData("52-54-00-ab-cd-ef", "52:54:00:ab:cd:ef")]
    public void Mac_parsing(string text, string expected) => Assert.Equal(expected, MacAddress.Parse(text).ToString());

    [Theory]
    [InlineData("52:54:00:ab:cd")]
    [InlineData("52:54:00:ab:cd:ef:01")]
    [InlineData("52:54:00:ab:cd:gg")]
    [InlineData("5:54:00:ab:cd:ef")]
    public void Bad_macs(string text) =>
        Assert.Equal(text, Assert.Throws<ValueFormatException>(() => MacAddress.Parse(text)).Input);

    [Fact]
    public void Generated_macs_are_stable_locally_administered_unicast()
    {
        var a = MacAddress.GenerateLocallyAdministered("web/0");
        Assert.Equal(a, MacAddress.GenerateLocallyAdministered("web/0"));
        Assert.NotEqual(a, MacAddress.GenerateLocallyAdministered("web/1"));
        Assert.StartsWith("52:54:00:", a.ToString());
        Assert.True(a.IsUnicast);
        Assert.True(a.IsLocallyAdministered);
    }

    [Theory]
    [InlineData("0000:01:00.0", "0000:01:00.0")]
    [InlineData("0000:AF:1f.7", "0000:af:1f.7")]
    [InlineData("10de:00:02.1", "10de:00:02.1")]
    public void Pci_parsing(string text, string expected) => Assert.Equal(expected, PciAddress.Parse(text).ToString());

    [Theory]
    [InlineData("01:00.0")]
    [InlineData("0000:01:00.8")]
    [InlineData("0000:01:20.0")]
    [InlineData("0000:1:00.0")]
    [InlineData("00000:01:00.0")]
    [InlineData("0000:01:00")]
    public void Bad_pci_addresses(string text) =>
        Assert.Equal(text, Assert.Throws<ValueFormatException>(() => PciAddress.Parse(text)).Input);
}
