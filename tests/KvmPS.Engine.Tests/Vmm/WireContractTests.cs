using System.Text;
using System.Text.Json;
using KvmPS.Devices.Virtio.Balloon;
using KvmPS.Devices.Virtio.Block;
using KvmPS.Devices.Virtio.Net;
using KvmPS.Devices.Virtio.Vsock;
using KvmPS.Contract;
using KvmPS.Devices.Config;
using KvmPS.Storage;
using KvmPS.Vm;
using KvmPS.Vmm;
using Def = KvmPS.Management.Definitions;
using KvmPS.Management.Vmm;

namespace KvmPS.Engine.Tests.Vmm;

/// <summary>
/// The wire contract (KvmPS.Contract) from both ends: what management writes, the engine reads into the machine it
/// meant; the engine's own configuration reads back equal; unknown fields are refused by name; units are in names.
/// </summary>
public sealed class WireContractTests
{
    private static Def.VmDefinition Definition() => new()
    {
        Name = "wire",
        Memory = Def.MemorySettings.Fixed(384L << 20),
        Vcpus = new Def.VcpuSettings(2, 4),
        Boot = new Def.DefaultGuestBoot("kvmps.run=exit 3"),
        Disks = new[]
        {
            new Def.DiskDefinition("/srv/a.raw", Def.DiskFormat.Raw, 1L << 30),
            new Def.DiskDefinition("/srv/b.qcow2", Def.DiskFormat.Qcow2, 1L << 30, true),
        },
        NetworkAdapters = new[] { new Def.NetworkAdapterDefinition("tapwire0", "br9", Def.MacAddress.Parse("52:54:00:aa:bb:cc")) },
        BalloonEnabled = true,
        MemoryBacking = new Def.MemoryBackingSettings(Def.HugePagesMode.Thp, true, 0),
    };

    [Fact]
    public void WhatManagementWritesTheEngineReadsAsMeant()
    {
        byte[] json = VmmConfigBuilder.Build(Definition(), "/run/wire.sock", "/run/wire.serial");
        var config = VmmConfig.FromJson(json, "wire.json");

        var m = config.Machine;
        Assert.Equal(384UL << 20, m.MemoryBytes);
        Assert.Equal(2, m.VcpuCount);
        Assert.Equal(4, m.EffectiveMaxVcpus);
        Assert.Equal("kvmps.run=exit 3", m.Cmdline);
        Assert.Null(m.KernelPath);
        Assert.Equal(HugePageMode.TransparentHugePages, m.Memory.HugePages);
        Assert.True(m.Memory.Ksm);
        Assert.Equal(0, m.Memory.NumaNode);
        Assert.Equal(ResetPolicy.Reboot, m.OnReset);
        Assert.Equal(SerialMode.File, config.Serial);
        Assert.Equal("/run/wire.serial", config.SerialPath);
        Assert.Equal("/run/wire.sock", config.ControlSocket);
        Assert.Equal(CrashPolicy.Stay, config.EffectiveCrashPolicy);

        Assert.Collection(m.Devices,
            d =>
            {
                var b = Assert.IsType<BlockDeviceConfig>(d);
                Assert.Equal(("/srv/a.raw", DiskImageFormat.Raw, false, "wire-d0"), (b.Path, b.Format, b.ReadOnly, b.Serial));
            },
            d =>
            {
                var b = Assert.IsType<BlockDeviceConfig>(d);
                Assert.Equal(("/srv/b.qcow2", DiskImageFormat.Qcow2, true, "wire-d1"), (b.Path, b.Format, b.ReadOnly, b.Serial));
            },
            d =>
            {
                var n = Assert.IsType<NetDeviceConfig>(d);
                Assert.Equal(("tapwire0", "br9", "52:54:00:aa:bb:cc"), (n.Tap, n.Bridge, NetDeviceConfig.FormatMac(n.Mac)));
            },
            d =>
            {
                var b = Assert.IsType<BalloonDeviceConfig>(d);
                Assert.Equal((true, 5), (b.DeflateOnOom, b.StatsIntervalSeconds));
            });
    }

    [Fact]
    public void TheEnginesConfigurationReadsBackEqual()
    {
        var first = VmmConfig.FromArgs(["--config", WriteTemp(VmmConfigBuilder.Build(Definition(), "/run/w.sock", "/run/w.serial")),
            "--device", "vsock,guest_cid=7,uds_path=/run/w.vsock", "--rng", "on", "--debugcon", "stderr"]);
        byte[] written = ContractJson.WriteConfiguration(first.Configuration);
        var second = VmmConfig.FromJson(written, "again.json");

        Assert.Equal(Encoding.UTF8.GetString(written), Encoding.UTF8.GetString(ContractJson.WriteConfiguration(second.Configuration)));
        Assert.Equal(first.Machine.Devices.Select(d => d.Type), second.Machine.Devices.Select(d => d.Type));
        Assert.Equal(["block", "block", "net", "balloon", "vsock", "rng"], second.Machine.Devices.Select(d => d.Type));
        Assert.Equal(first.Machine with { Devices = [] }, second.Machine with { Devices = [] });
        Assert.Equal((first.Serial, first.SerialPath, first.ControlSocket, first.EffectiveCrashPolicy, first.DebugCon),
            (second.Serial, second.SerialPath, second.ControlSocket, second.EffectiveCrashPolicy, second.DebugCon));
        Assert.Equal(7UL, Assert.IsType<VsockDeviceConfig>(second.Machine.Devices[4]).GuestCid);
    }

    [Fact]
    public void UnknownFieldsAreRefusedByName()
    {
        // The old key: a size that was sometimes a string of bytes and sometimes a number of MiB.
        var e = Assert.Throws<VmmConfigException>(() => VmmConfig.FromJson("""{ "vcpus": 1, "memory": 384 }""", "old.json"));
        Assert.StartsWith("old.json: unknown field 'memory'", e.Message);
        Assert.Contains("memory_bytes", e.Message); // the known fields are listed

        e = Assert.Throws<VmmConfigException>(() => VmmConfig.FromJson("""{ "devices": [ { "path": "/x", "type": "block", "raed_only": true } ] }""", "d.json"));
        Assert.StartsWith("d.json: unknown field 'devices[0].raed_only'", e.Message);

        e = Assert.Throws<VmmConfigException>(() => VmmConfig.FromJson("""{ "devices": [ { "type": "floppy" } ] }""", "d.json"));
        Assert.Contains("unknown device type 'floppy'", e.Message);
        e = Assert.Throws<VmmConfigException>(() => VmmConfig.FromJson("""{ "vcpus": "two" }""", "t.json"));
        Assert.Equal("t.json: field 'vcpus': expected a whole number (-2147483648 to 2147483647), got the string \"two\".", e.Message);
        e = Assert.Throws<VmmConfigException>(() => VmmConfig.FromJson("""{ "hugepages": "huge" }""", "t.json"));
        Assert.Contains("field 'hugepages': expected one of \"none\", \"thp\", \"hugetlbfs\"", e.Message);

        var request = Assert.Throws<ControlProtocolException>(() => ControlRequests.Parse(Json("""{ "request": "stop", "gracefull": false }""")));
        Assert.Equal(ControlErrorCodes.InvalidArgument, request.Code);
        Assert.StartsWith("stop: unknown field 'gracefull'", request.Message);
        request = Assert.Throws<ControlProtocolException>(() => ControlRequests.Parse(Json("""{ "request": "snapshot.create", "memory": "full" }""")));
        Assert.Contains("missing field 'path'", request.Message);
    }

    [Fact]
    public void SizesAreBytesAndSaySo()
    {
        Assert.Equal(384UL << 20, VmmConfig.FromJson("""{ "memory_bytes": 402653184 }""", "t.json").Machine.MemoryBytes);
        Assert.Equal(384UL << 20, VmmConfig.FromArgs(["--memory", "384M"]).Machine.MemoryBytes);
        Assert.Equal(402653184L, VmmConfig.FromArgs(["--memory", "384M"]).Configuration.MemoryBytes);
        Assert.Contains("out of range", Assert.Throws<VmmConfigException>(() => VmmConfig.FromJson("""{ "memory_bytes": 0 }""", "t.json")).Message);

        using var written = JsonDocument.Parse(VmmConfigBuilder.Build(Definition(), "/s", "/l"));
        Assert.Equal(384L << 20, written.RootElement.GetProperty("memory_bytes").GetInt64());
        Assert.False(written.RootElement.TryGetProperty("memory", out _));

        // Every quantity on the wire carries its unit (bytes, ms, s) or is a count whose name says what it counts.
        string[] counts = ["id", "pid", "vcpu", "vcpus", "max_vcpus", "boots", "numa_node", "guest_cid", "mtu", "debug_exit_value",
            "count" /* vcpu.set's vCPU count, named by issue 13 */, "present_vcpus", "round" /* migrate.status: the pre-copy round */,
            "bits_per_pixel" /* display.get: the guest's pixel depth */];
        string[] units = ["bytes", "ms", "s", "percent"];
        string[] counted = ["pages", "packets", "exits", "writes", "pfns", "stalls", "dropped", "responses", "files", "pixels", "clients", "entries" /* dirty_ring_entries: ring entries per vCPU */];
        var offenders = new List<string>();
        Assert.Contains(typeof(MetricsReply), ContractTypes()); // the scan sees the records
        foreach (var type in ContractTypes())
            foreach (var property in ContractJsonContext.Default.GetTypeInfo(type)!.Properties)
            {
                var t = Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType;
                if (t != typeof(int) && t != typeof(long) && t != typeof(ulong)) continue;
                var words = property.Name.Split('_');
                if (!counts.Contains(property.Name) && !words.Intersect(units).Any() && !counted.Contains(words[^1]))
                    offenders.Add($"{type.Name}.{property.Name}");
            }
        Assert.Empty(offenders);
    }

    [Fact]
    public void EveryRequestNameHasARecord()
    {
        Assert.Equal(ControlRequests.Names.Count, ControlRequests.Names.Distinct().Count());
        Assert.Equal(ControlRequests.Names.Order(), ControlRequests.Records.Keys.Order());
        foreach (var name in ControlRequests.Names)
        {
            var typeInfo = ControlRequests.Records[name];
            // The smallest valid request: its name and whatever the record requires.
            var fields = new Dictionary<string, object> { ["request"] = name };
            foreach (var p in typeInfo.Properties.Where(p => p.IsRequired))
                fields[p.Name] = p.PropertyType == typeof(string) ? "/tmp/x"
                    : p.PropertyType == typeof(DeviceSpec) ? new Dictionary<string, object> { ["type"] = "rng" }
                    : 1;
            var parsed = ControlRequests.Parse(Json(JsonSerializer.Serialize(fields)));
            Assert.Equal(typeInfo.Type, parsed.GetType());
            Assert.Equal(name, parsed.Request);
            // And the record writes back to the same name.
            using var written = JsonDocument.Parse(ControlRequests.Serialize(parsed));
            Assert.Equal(name, written.RootElement.GetProperty("request").GetString());
        }
        Assert.Contains(SnapshotCreateRequest.Name, ControlRequests.Core);
        var unknown = Assert.Throws<ControlProtocolException>(() => ControlRequests.Parse(Json("""{ "request": "warp" }""")));
        Assert.Equal(ControlErrorCodes.UnknownRequest, unknown.Code);
    }

    [Fact]
    public void SnapshotCreateIsTheAgreedShape()
    {
        var r = Assert.IsType<SnapshotCreateRequest>(ControlRequests.Parse(Json(
            """{ "request": "snapshot.create", "path": "/s/1", "memory": "diff", "resume": false, "disks": "ignore", "snapshot_id": "s1" }""")));
        Assert.Equal(("/s/1", SnapshotMemory.Diff, false, SnapshotDisks.Ignore, "s1"), (r.Path, r.Memory, r.Resume, r.Disks, r.SnapshotId));
        var defaults = Assert.IsType<SnapshotCreateRequest>(ControlRequests.Parse(Json("""{ "request": "snapshot.create", "path": "/s/2" }""")));
        Assert.Equal((SnapshotMemory.Full, true, SnapshotDisks.Snapshot, (string?)null), (defaults.Memory, defaults.Resume, defaults.Disks, defaults.SnapshotId));

        var reply = new SnapshotCreateReply
        {
            Path = "/s/1", Memory = SnapshotMemory.Full, MemoryBytes = 4096, StateBytes = 100, DurationMs = 5, PausedMs = 3,
            DiskSnapshots = [new DiskSnapshotReply("/d.qcow2", "s1")], VmState = VmStateNames.Running,
        };
        Assert.Equal("""{"path":"/s/1","memory":"full","memory_bytes":4096,"state_bytes":100,"duration_ms":5,"paused_ms":3,"disk_snapshots":[{"path":"/d.qcow2","snapshot_id":"s1"}],"vm_state":"Running"}""",
            JsonSerializer.Serialize(reply, ContractJsonContext.Default.SnapshotCreateReply));
    }

    private static IEnumerable<Type> ContractTypes() =>
        typeof(VmmConfiguration).Assembly.GetExportedTypes()
            .Where(t => !t.IsAbstract && !t.IsGenericType && !t.IsEnum && !typeof(Exception).IsAssignableFrom(t) && !(t.IsSealed && t.IsAbstract))
            .Where(t => TryTypeInfo(t) is { Kind: System.Text.Json.Serialization.Metadata.JsonTypeInfoKind.Object });

    private static System.Text.Json.Serialization.Metadata.JsonTypeInfo? TryTypeInfo(Type t)
    {
        try { return ContractJsonContext.Default.GetTypeInfo(t); }
        catch (NotSupportedException) { return null; } // not a wire record (the converter, the context itself)
    }

    private static JsonElement Json(string text)
    {
        using var document = JsonDocument.Parse(text);
        return document.RootElement.Clone();
    }

    private static string WriteTemp(byte[] bytes)
    {
        string path = Path.Combine(Path.GetTempPath(), $"kvmps-wire-{Guid.NewGuid():n}.json");
        File.WriteAllBytes(path, bytes);
        return path;
    }
}
