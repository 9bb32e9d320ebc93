using System.Text;
using KvmPS.Management.DesiredState;
using KvmPS.Management.Manifests;

namespace KvmPS.Fuzz.Targets;

/// <summary>
/// The .psd1 manifest reader: <see cref="PsdReader"/> (the data language) and <see cref="DesiredStateReader"/> (the
/// manifest's keys into desired VMs). Expected: ManifestParseException and DesiredStateException.
/// </summary>
internal sealed class ManifestTarget : IFuzzTarget
{
    public string Name => "manifest";
    public string Description => ".psd1 manifest text (Management/Manifests PsdReader, DesiredState/DesiredStateReader)";

    private static readonly string Base = Path.Combine(Path.GetTempPath(), "kvmps-fuzz-manifest-base");

    public void Run(ReadOnlySpan<byte> input)
    {
        string text = Encoding.UTF8.GetString(input);
        try { PsdReader.ParseValue(text, "fuzz.psd1"); }
        catch (ManifestParseException) { }
        try { DesiredStateReader.Parse(text, "fuzz.psd1", Base, hostNameAllowed: input.Length > 0 && (input[0] & 1) != 0); }
        catch (DesiredStateException) { }
    }

    public IEnumerable<(string, byte[])> Seeds()
    {
        var examples = Path.Combine(FuzzPaths.RepoRoot, "examples");
        foreach (var f in Directory.GetFiles(examples, "*.psd1").Order(StringComparer.Ordinal))
            yield return (Path.GetFileName(f), File.ReadAllBytes(f));
        string[] snippets =
        [
            "@{ VMs = @( @{ Name = 'a'; MemoryBytes = 512MB; ProcessorCount = 2 } ) }",
            "@{ VMs = @(@{ Name = 'b'; Memory = 1GB; Disks = @(@{ Path = 'b.qcow2'; SizeBytes = 0x10000000 }) ; State = 'Running' }) }",
            "@{ a = 1; b = 'x'; c = \"y$z\"; d = @(1,2,3); e = $true; f = $null; g = [int]'5'; h = -1.5e3; i = @{} }",
            "@{ s = @'\nhere\n'@; t = 'it''s'; u = 1kb + 2 }",
            "# comment\n<# block #>\n@{ x = ,1 }",
            "@{ VMs = @( @{ Name = 'c'; NetworkAdapters = @(@{ Bridge = 'br0' }); Vsock = @{ GuestCid = 3 } } ) }",
            "@{",
            "@{ x = @(@(@(@(@(1))))) }",
        ];
        int n = 0;
        foreach (var s in snippets) yield return ($"snippet-{n++:D2}.psd1", Encoding.UTF8.GetBytes(s));
    }
}
