using KvmPS.Management.Definitions;
using KvmPS.Management.DesiredState;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Store;
using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Management.Tests.Definitions;

/// <summary>
/// Names and other validated identifiers with a control character anywhere are rejected and nothing is created.
/// Regression: the name pattern ended in <c>$</c>, which also matches before a final '\n', so "vm1\n" was accepted
/// and created a folder "vm1\n".
/// </summary>
public sealed class ControlCharacterNameTests : IDisposable
{
    private readonly TempDirectory _root = new();

    public void Dispose() => _root.Dispose();

    public static TheoryData<int> ControlCharacters()
    {
        var data = new TheoryData<int>();
        for (var c = 0; c < 0x20; c++)
            data.Add(c);
        data.Add(0x7F);
        return data;
    }

    private static IEnumerable<string> NamesWith(char c) => new[] { $"vm1{c}", $"{c}vm1", $"vm{c}1", $"vm1{c}{c}" };

    [Theory]
    [MemberData(nameof(ControlCharacters))]
    public void Vm_names_with_a_control_character_are_rejected_and_nothing_is_created(int code)
    {
        var store = VmStore.Open(_root.Path);
        var manager = new VmManager(store);
        foreach (var name in NamesWith((char)code))
        {
            Assert.False(VmName.IsValid(name));
            var error = Assert.Throws<VmDefinitionException>(() => manager.New(TestDefinitions.Minimal(name)));
            Assert.Equal("Name", error.Property);
            Assert.Equal(name, error.VmName);
            // The message shows the character escaped, so it neither breaks the line nor hides the culprit.
            Assert.DoesNotContain(error.Message, char.IsControl);
            Assert.Contains($"VM '{VmName.ForDisplay(name)}'", error.Message);
            Assert.ThrowsAny<Exception>(() => manager.Get(name));
        }
        Assert.Empty(Directory.EnumerateFileSystemEntries(Path.Combine(_root.Path, "vms")));
        Assert.Empty(store.ListNames());
    }

    [Theory]
    [MemberData(nameof(ControlCharacters))]
    public void Manifest_names_with_a_control_character_are_rejected(int code)
    {
        // A PowerShell double-quoted string spells the character with a backtick escape or literally.
        var escaped = code switch { 0 => "`0", 7 => "`a", 8 => "`b", 9 => "`t", 10 => "`n", 11 => "`v", 12 => "`f", 13 => "`r", 27 => "`e", _ => $"`u{{{code:x}}}" };
        var text = $"@{{ VirtualMachines = @( @{{ Name = \"vm1{escaped}\"; MemoryStartupBytes = 256MB }} ) }}";
        var error = Assert.Throws<DesiredStateException>(() => DesiredStateReader.Parse(text, "m.psd1"));
        Assert.Contains("Name", error.Message);
        Assert.DoesNotContain(error.Message, char.IsControl);
    }

    [Theory]
    [MemberData(nameof(ControlCharacters))]
    public void Pci_addresses_and_sizes_with_a_control_character_are_rejected(int code)
    {
        var c = (char)code;
        Assert.Throws<ValueFormatException>(() => PciAddress.Parse($"0000:01:00.0{c}"));
        Assert.Throws<ValueFormatException>(() => PciAddress.Parse($"{c}0000:01:00.0"));
        Assert.Throws<ValueFormatException>(() => MacAddress.Parse($"52:54:00:12:34:56{c}"));
    }

    [Fact]
    public void Names_in_messages_show_control_characters_escaped()
    {
        Assert.Equal("vm1\\n", VmName.ForDisplay("vm1\n"));
        Assert.Equal("\\x00a\\x7f\\t", VmName.ForDisplay("\0a\x7f\t"));
        Assert.Equal("web-01", VmName.ForDisplay("web-01"));
    }

    [Fact]
    public void Sizes_accept_only_ascii_digits()
    {
        Assert.Equal(512L << 20, SizeParser.ParseBytes("512MB"));
        // '\u0665' is ARABIC-INDIC DIGIT FIVE: \d matches it, decimal.Parse does not.
        Assert.Throws<ValueFormatException>(() => SizeParser.ParseBytes("\u0665MB"));
    }
}
