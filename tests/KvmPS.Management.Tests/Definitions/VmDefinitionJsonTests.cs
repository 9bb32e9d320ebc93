using System.Text.Json;
using KvmPS.Management.Definitions;

namespace KvmPS.Management.Tests.Definitions;

public sealed class VmDefinitionJsonTests
{
    [Fact]
    public void Round_trips_every_field()
    {
        var original = TestDefinitions.Full();
        var json = VmDefinitionJson.Serialize(original);
        Assert.Equal(original, VmDefinitionJson.Deserialize(json));
        foreach (var boot in new BootSource[] { DefaultGuestBoot.Instance, new DirectKernelBoot("/k", "/i", "quiet") })
        {
            var variant = original with { Boot = boot };
            Assert.Equal(variant, VmDefinitionJson.Deserialize(VmDefinitionJson.SerializeToUtf8Bytes(variant)));
        }
    }

    [Fact]
    public void Field_names_are_stable_and_carry_units()
    {
        using var document = JsonDocument.Parse(VmDefinitionJson.Serialize(TestDefinitions.Full()));
        var root = document.RootElement;
        var names = root.EnumerateObject().Select(p => p.Name).ToArray();
        Assert.Equal(new[]
        {
            "name", "memoryStartupBytes", "memoryMinimumBytes", "memoryMaximumBytes", "vcpuCount", "vcpuMaximum", "boot",
            "disks", "networkAdapters", "balloonEnabled", "pciPassthrough", "hugePages", "ksmEnabled", "numaNode",
            "autostart", "notes", "logMaxBytes", "logFileCount",
        }, names);
        Assert.Equal(1L << 30, root.GetProperty("memoryStartupBytes").GetInt64());
        Assert.Equal("qcow2", root.GetProperty("disks")[1].GetProperty("format").GetString());
        Assert.Equal(10L << 30, root.GetProperty("disks")[1].GetProperty("sizeBytes").GetInt64());
        Assert.Equal("52:54:00:aa:bb:cc", root.GetProperty("networkAdapters")[0].GetProperty("macAddress").GetString());
        Assert.Equal("thp", root.GetProperty("hugePages").GetString());
        Assert.Equal(1, root.GetProperty("boot").GetProperty("bootDiskIndex").GetInt32());
    }

    [Theory]
    [InlineData("""{ "name": "a", "memoryStartupBytes": 268435456, "memoryStartupByte": 1 }""", "memoryStartupByte")]
    [InlineData("""{ "name": "a", "memoryStartupBytes": 268435456, "disks": [ { "path": "x", "sizeByte": 512 } ] }""", "sizeByte")]
    [InlineData("""{ "name": "a", "memoryStartupBytes": 268435456, "boot": { "kernel": "x" } }""", "kernel")]
    public void Unknown_keys_are_rejected(string json, string key)
    {
        var error = Assert.Throws<VmDefinitionException>(() => VmDefinitionJson.Deserialize(json));
        Assert.Contains($"'{key}'", error.Reason);
    }

    [Fact]
    public void Json_values_are_validated_like_manifests()
    {
        var error = Assert.Throws<VmDefinitionException>(() => VmDefinitionJson.Deserialize("""{ "name": "a", "memoryStartupBytes": 1000 }"""));
        Assert.Equal(("a", "MemoryStartupBytes"), (error.VmName, error.Property));
        error = Assert.Throws<VmDefinitionException>(() => VmDefinitionJson.Deserialize("""{ "name": "a", "memoryStartupBytes": "1GB" }"""));
        Assert.Equal("$.memoryStartupBytes", error.Property);
        Assert.Throws<VmDefinitionException>(() => VmDefinitionJson.Deserialize("null"));
        Assert.Throws<VmDefinitionException>(() => VmDefinitionJson.Deserialize("{"));
    }

    [Fact]
    public void Missing_mac_is_generated_on_read()
    {
        var definition = VmDefinitionJson.Deserialize("""{ "name": "n1", "memoryStartupBytes": 268435456, "networkAdapters": [ { "tap": "tap0" } ] }""");
        Assert.Equal(MacAddress.GenerateLocallyAdministered("n1/0"), definition.NetworkAdapters[0].MacAddress);
    }
}
