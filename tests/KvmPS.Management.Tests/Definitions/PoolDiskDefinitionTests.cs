using System.Collections;
using KvmPS.Management.Definitions;

namespace KvmPS.Management.Tests.Definitions;

public sealed class PoolDiskDefinitionTests
{
    private static VmDefinition Read(params Hashtable[] disks) => VmDefinitionReader.FromDictionary(new Hashtable
    {
        ["Name"] = "web1",
        ["MemoryStartupBytes"] = 256L << 20,
        ["Disks"] = disks.Cast<object>().ToArray(),
    });

    [Fact]
    public void PoolAndVolumeAreKeptAsAReferenceAndRoundTripThroughJson()
    {
        var definition = Read(new Hashtable { ["Pool"] = "lab", ["Volume"] = "web1.qcow2" }, new Hashtable { ["Volume"] = "data.raw" });

        Assert.Equal("pool://lab/web1.qcow2", definition.Disks[0].Path);
        Assert.Equal("lab", definition.Disks[0].Pool);
        Assert.Equal("web1.qcow2", definition.Disks[0].Volume);
        Assert.Equal(DiskFormat.Qcow2, definition.Disks[0].Format);
        Assert.Equal("default", definition.Disks[1].Pool);
        Assert.Equal(DiskFormat.Raw, definition.Disks[1].Format);

        var json = VmDefinitionJson.Serialize(definition);
        Assert.Contains("\"pool\": \"lab\"", json);
        Assert.Contains("\"volume\": \"web1.qcow2\"", json);
        Assert.DoesNotContain("pool://", json);
        Assert.Equal(definition, VmDefinitionJson.Deserialize(json));
    }

    [Theory]
    [InlineData("a/b", "Volume")]
    [InlineData("..", "Volume")]
    [InlineData("", "Volume")]
    public void BadVolumeNamesAreRefusedNamingTheSetting(string volume, string property)
    {
        var error = Assert.Throws<VmDefinitionException>(() => Read(new Hashtable { ["Pool"] = "lab", ["Volume"] = volume }));

        Assert.Equal($"Disks[0].{property}", error.Property);
    }

    [Fact]
    public void PathTogetherWithPoolOrAPoolWithoutVolumeIsRefused()
    {
        Assert.Equal("Disks[0].Path", Assert.Throws<VmDefinitionException>(() => Read(new Hashtable { ["Pool"] = "lab", ["Volume"] = "a.raw", ["Path"] = "a.raw" })).Property);
        Assert.Equal("Disks[0].Volume", Assert.Throws<VmDefinitionException>(() => Read(new Hashtable { ["Pool"] = "lab" })).Property);
        Assert.Equal("Disks[0].Pool", Assert.Throws<VmDefinitionException>(() => Read(new Hashtable { ["Pool"] = "../x", ["Volume"] = "a.raw" })).Property);
    }
}
