using System.Text;
using System.Text.Json;
using KvmPS.Contract;
using KvmPS.Management.Definitions;
using KvmPS.Management.Vmm;

namespace KvmPS.Management.Tests.Vmm;

/// <summary>Management's side of the wire contract: the configuration it writes and the replies it reads.</summary>
public sealed class VmmWireTests
{
    [Fact]
    public void ConfigurationRoundTripsThroughTheContract()
    {
        var definition = TestDefinitions.Full();
        var record = VmmConfigBuilder.BuildConfiguration(definition, "/run/full.sock", "/run/full.serial", p => "/store/" + p);
        byte[] written = VmmConfigBuilder.Build(definition, "/run/full.sock", "/run/full.serial", p => "/store/" + p);

        var read = ContractJson.ReadConfiguration(written, "config.json");
        Assert.Equal(Encoding.UTF8.GetString(written), Encoding.UTF8.GetString(ContractJson.WriteConfiguration(read)));
        Assert.Equal(record with { Devices = null }, read with { Devices = null });
        Assert.Equal(record.Devices, read.Devices); // element by element: the device records compare by value

        Assert.Equal(1L << 30, read.MemoryBytes); // startup memory, in bytes
        Assert.Equal((2, 8), (read.Vcpus, read.MaxVcpus));
        Assert.Equal("/usr/share/seabios/bios.bin", read.Firmware);
        Assert.Equal((HugePageBacking.Thp, true, 0), (read.Hugepages, read.Ksm, read.NumaNode));
        Assert.Equal((GuestCrashAction.Stay, GuestResetAction.Reboot), (read.OnCrash, read.OnReset));
        Assert.Equal("file:/run/full.serial", read.Serial);
        string? rom = File.Exists(VmmConfigBuilder.IpxeVirtioRomPath) && Environment.GetEnvironmentVariable(VmmConfigBuilder.NetworkBootRomVariable) is null
            ? VmmConfigBuilder.IpxeVirtioRomPath : null;
        // Firmware boot: the boot disk (index 1) first, so SeaBIOS boots it.
        Assert.Collection(read.Devices!,
            d => Assert.Equal(new BlockDeviceSpec { Path = "/store/root.qcow2", Format = BlockImageFormat.Qcow2, ReadOnly = false, Serial = "full-vm-d1" }, d),
            d => Assert.Equal(new BlockDeviceSpec { Path = "/store/data.raw", Format = BlockImageFormat.Raw, ReadOnly = false, Serial = "full-vm-d0" }, d),
            d => Assert.Equal(new BlockDeviceSpec { Path = "/store//srv/iso/install.iso", Format = BlockImageFormat.Raw, ReadOnly = true, Serial = "full-vm-d2" }, d),
            // Firmware boot: the adapters carry iPXE's ROM when ipxe-qemu is installed (as QEMU's NICs do).
            d => Assert.Equal(new NetDeviceSpec { Tap = "tap0", Mac = "52:54:00:aa:bb:cc", RomPath = rom }, d),
            d => Assert.Equal(new NetDeviceSpec { Tap = VmmConfigBuilder.GeneratedTapName("full-vm", 1), Bridge = "br0", Mac = "02:00:00:00:00:01", RomPath = rom }, d),
            d => Assert.Equal(new BalloonDeviceSpec { DeflateOnOom = true, StatsIntervalS = 5 }, d),
            d => Assert.Equal(new VfioDeviceSpec { Host = "0000:01:00.0" }, d));
    }

    [Fact]
    public void PassthroughDevicesComeLastAsVfioAndVfioUserRecords()
    {
        var definition = TestDefinitions.Minimal("pt") with
        {
            PciPassthrough = new[] { PciAddress.Parse("0000:03:00.1") },
            VfioUserDevices = new[] { "/run/a.sock", "/run/b.sock" },
        };
        var read = ContractJson.ReadConfiguration(VmmConfigBuilder.Build(definition, "/s", "/l"), "config.json");
        Assert.Equal(new DeviceSpec[]
        {
            new VfioDeviceSpec { Host = "0000:03:00.1" },
            new VfioUserDeviceSpec { Socket = "/run/a.sock" },
            new VfioUserDeviceSpec { Socket = "/run/b.sock" },
        }, read.Devices!.Skip(read.Devices!.Count - 3));
        // On the wire: {"type":"vfio-user","socket":"..."}, the keys kvmps-vmm's --device vfio-user,socket=PATH takes.
        using var json = JsonDocument.Parse(VmmConfigBuilder.Build(definition, "/s", "/l"));
        var last = json.RootElement.GetProperty("devices").EnumerateArray().Last();
        Assert.Equal(("vfio-user", "/run/b.sock"), (last.GetProperty("type").GetString(), last.GetProperty("socket").GetString()));
    }

    [Fact]
    public void FirmwareBootedAdaptersGetTheIpxeRomUnlessTurnedOff()
    {
        var firmware = TestDefinitions.Full();
        var kernel = TestDefinitions.Minimal("kernel-boot");
        Assert.Equal(VmmConfigBuilder.IpxeVirtioRomPath, VmmConfigBuilder.NetworkBootRom(firmware, setting: null, romInstalled: true));
        Assert.Equal(VmmConfigBuilder.IpxeVirtioRomPath, VmmConfigBuilder.NetworkBootRom(firmware, setting: "on", romInstalled: true));
        foreach (var off in new[] { "0", "off", "false", "no", " OFF " })
            Assert.Null(VmmConfigBuilder.NetworkBootRom(firmware, off, romInstalled: true));
        Assert.Null(VmmConfigBuilder.NetworkBootRom(firmware, setting: null, romInstalled: false)); // ipxe-qemu not installed
        Assert.IsNotType<FirmwareBoot>(kernel.Boot);
        Assert.Null(VmmConfigBuilder.NetworkBootRom(kernel, setting: null, romInstalled: true));    // nothing runs option ROMs
    }

    [Fact]
    public void WrittenFieldsCarryTheirUnits()
    {
        using var json = JsonDocument.Parse(VmmConfigBuilder.Build(TestDefinitions.Minimal("units"), "/s", "/l"));
        var root = json.RootElement;
        Assert.Equal(256L << 20, root.GetProperty("memory_bytes").GetInt64());
        Assert.False(root.TryGetProperty("memory", out _));
        // null fields are left out (the VMM's defaults apply), and "type" leads every device object.
        Assert.False(root.TryGetProperty("kernel", out _));
    }

    [Fact]
    public void AMaximumAboveStartupMemoryBecomesTheVirtioMemCeilingInWholeBlocks()
    {
        const long MiB = 1L << 20;
        VmmConfiguration With(long startup, long maximum, bool balloon = false) => VmmConfigBuilder.BuildConfiguration(
            TestDefinitions.Minimal("mem") with { Memory = new MemorySettings(startup, Math.Min(startup, 64 * MiB), maximum), BalloonEnabled = balloon },
            "/s", "/l");

        Assert.Null(With(256 * MiB, 256 * MiB).MemoryMaximumBytes); // fixed size: no virtio-mem device
        Assert.Equal(1024 * MiB, With(256 * MiB, 1024 * MiB).MemoryMaximumBytes);
        // A balloon with headroom also gets virtio-mem: the balloon below startup, hot-plug above (dynamic memory).
        var both = With(256 * MiB, 1024 * MiB, balloon: true);
        Assert.Equal(1024 * MiB, both.MemoryMaximumBytes);
        Assert.Contains(both.Devices!, d => d is BalloonDeviceSpec);
        // Startup not on a 2 MiB boundary: the ceiling is startup + whole blocks (the VMM plugs only whole blocks).
        Assert.Equal(101 * MiB + 1022 * MiB, With(101 * MiB, 1124 * MiB).MemoryMaximumBytes);
        Assert.Null(With(101 * MiB, 102 * MiB).MemoryMaximumBytes); // less than one block of headroom

        using var json = JsonDocument.Parse(VmmConfigBuilder.Build(TestDefinitions.Minimal("w") with { Memory = new MemorySettings(256 * MiB, 256 * MiB, 512 * MiB) }, "/s", "/l"));
        Assert.Equal(512 * MiB, json.RootElement.GetProperty("memory_maximum_bytes").GetInt64());
    }

    [Fact]
    public void AConfigurationWithAnUnknownFieldIsRefusedByName()
    {
        var e = Assert.Throws<ContractException>(() => ContractJson.ReadConfiguration("""{ "memory": "256M" }"""u8, "vm.json"));
        Assert.StartsWith("vm.json: unknown field 'memory' (known: ", e.Message);
        e = Assert.Throws<ContractException>(() => ContractJson.ReadConfiguration("""{ "devices": [ { "type": "net", "tap": "t0", "vlan": 3 } ] }"""u8, "vm.json"));
        Assert.StartsWith("vm.json: unknown field 'devices[0].vlan'", e.Message);
        e = Assert.Throws<ContractException>(() => ContractJson.ReadConfiguration("""{ "devices": [ { "type": "net" } ] }"""u8, "vm.json"));
        Assert.StartsWith("vm.json: missing field 'devices[0].tap'", e.Message);
    }

    [Fact]
    public void RepliesAreReadThroughTheirRecords()
    {
        // A newer VMM may add fields: replies accept them.
        var status = ContractJson.ReadResult(Json("""
            {"state":"Crashed","boots":2,"uptime_ms":1500,"nested_pvm":true,"acpi_power_button":false,"future_field":1,
             "vcpus":[{"id":0,"state":"Stopped"}],
             "exit":{"kind":"Crashed","reason":"triple fault","registers":{"vcpu":0,"rip":"0xfff0","cs":"0xf000"}}}
            """), ContractJsonContext.Default.StatusReply, "status");
        var view = VmmStatus.From(status);
        Assert.Equal(VmmState.Crashed, view.State);
        Assert.Equal(TimeSpan.FromMilliseconds(1500), view.Uptime);
        Assert.Equal(("Crashed", "triple fault"), (view.Exit!.Kind, view.Exit.Reason));
        Assert.Equal("0xfff0", view.Exit.Registers!["rip"]);
        Assert.Equal("0", view.Exit.Registers["vcpu"]);

        var stop = VmmStopResult.From(ContractJson.ReadResult(Json("""{"forced":true,"power_button":true,"outcome":"TimedOut","waited_ms":250,"state":"Stopped"}"""),
            ContractJsonContext.Default.StopReply, "stop"));
        Assert.Equal(new VmmStopResult(true, true, "Stopped", StopOutcomes.TimedOut, TimeSpan.FromMilliseconds(250)), stop);

        var bad = Assert.Throws<ContractException>(() => ContractJson.ReadResult(Json("""{"state":5}"""), ContractJsonContext.Default.StatusReply, "status"));
        Assert.Contains("reply to 'status'", bad.Message);
    }

    [Fact]
    public void ExitStatusesAreExplainedFromTheContract()
    {
        Assert.Equal("the guest crashed", KvmPS.Management.Lifecycle.VmManager.ExitMeaning(VmmExitCode.GuestCrashed));
        Assert.Equal("the guest wrote 3 to the debug-exit port", KvmPS.Management.Lifecycle.VmManager.ExitMeaning(VmmExitCode.ForDebugExit(3)));
        Assert.Equal("the VM was migrated to another VMM", KvmPS.Management.Lifecycle.VmManager.ExitMeaning(VmmExitCode.Migrated));
        Assert.Equal("unknown status", KvmPS.Management.Lifecycle.VmManager.ExitMeaning(20));
        Assert.Equal("a VMM thread made a system call its sandbox forbids", KvmPS.Management.Lifecycle.VmManager.ExitMeaning(VmmExitCode.SandboxViolation));
    }

    private static JsonElement Json(string text)
    {
        using var document = JsonDocument.Parse(text);
        return document.RootElement.Clone();
    }
}
