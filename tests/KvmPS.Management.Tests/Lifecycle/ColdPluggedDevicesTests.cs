using System.Diagnostics;
using KvmPS.Contract;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Tests.TestSupport;
using KvmPS.Management.Vmm;

namespace KvmPS.Management.Tests.Lifecycle;

/// <summary>How management tells the devices a VMM was started with (not removable live) from hot-plugged ones.</summary>
public sealed class ColdPluggedDevicesTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly List<Process> _processes = new();

    public void Dispose()
    {
        foreach (var p in _processes)
        {
            try { p.Kill(); p.WaitForExit(2000); } catch (InvalidOperationException) { }
            p.Dispose();
        }
        _dir.Dispose();
    }

    /// <summary>A process whose command line carries VMM arguments (sh ignores its positional parameters; two commands, so it does not exec sleep in its place).</summary>
    private int ProcessWith(params string[] vmmArguments)
    {
        var info = new ProcessStartInfo("/bin/sh") { ArgumentList = { "-c", "sleep 30; exit 0", "kvmps-vmm" } };
        foreach (var a in vmmArguments)
            info.ArgumentList.Add(a);
        var process = Process.Start(info)!;
        _processes.Add(process);
        // Process.Start returns once the child has exec'd, but the kernel lets a vfork parent go on before the new
        // image's arguments are in place: /proc/PID/cmdline can still be empty then (a CI run read no --config).
        var clock = Stopwatch.StartNew();
        while (!File.ReadAllText($"/proc/{process.Id}/cmdline").Contains("kvmps-vmm", StringComparison.Ordinal))
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"/proc/{process.Id}/cmdline never showed the arguments");
            Thread.Sleep(1);
        }
        return process.Id;
    }

    private string ConfigWithDevices(string file, int disks)
    {
        var definition = TestDefinitions.Minimal("c") with
        {
            Disks = new ValueList<DiskDefinition>(Enumerable.Range(0, disks).Select(i => new DiskDefinition($"/d{i}.raw"))),
        };
        var path = Path.Combine(_dir.Path, file);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllBytes(path, VmmConfigBuilder.Build(definition, "/s", "/l"));
        return path;
    }

    [Fact]
    public void The_configured_device_count_comes_from_the_vmms_config_or_restore_directory_and_device_flags()
    {
        Assert.Equal(2, ColdPluggedDevices.ConfiguredDeviceCount(ProcessWith("--config", ConfigWithDevices("vmm.json", 2))));
        Assert.Equal(3, ColdPluggedDevices.ConfiguredDeviceCount(ProcessWith("--config", ConfigWithDevices("vmm2.json", 1), "--device", "rng", "--device", "rng")));
        ConfigWithDevices("snap/config.json", 3);
        Assert.Equal(3, ColdPluggedDevices.ConfiguredDeviceCount(ProcessWith("--restore", Path.Combine(_dir.Path, "snap"))));
        Assert.Null(ColdPluggedDevices.ConfiguredDeviceCount(ProcessWith("--config", Path.Combine(_dir.Path, "missing.json"))));
        Assert.Null(ColdPluggedDevices.ConfiguredDeviceCount(ProcessWith("--other")));
        Assert.Null(ColdPluggedDevices.ConfiguredDeviceCount(0));
    }

    [Fact]
    public void Devices_in_the_slots_of_the_configuration_are_cold_the_ones_after_hot_and_an_unknown_vmm_makes_all_cold()
    {
        var definition = TestDefinitions.Minimal("c") with
        {
            Disks = new ValueList<DiskDefinition>([new DiskDefinition("/a.raw"), new DiskDefinition("/b.raw")]),
            NetworkAdapters = new ValueList<NetworkAdapterDefinition>([new NetworkAdapterDefinition("t", null, MacAddress.Parse("52:54:00:00:00:01"))]),
        };
        DeviceDescription Block(string pci, string path) => new() { Type = "block", Pci = pci, Options = new() { ["path"] = System.Text.Json.JsonSerializer.SerializeToElement(path) } };
        DeviceDescription Net(string pci, string mac) => new() { Type = "net", Pci = pci, Options = new() { ["mac"] = System.Text.Json.JsonSerializer.SerializeToElement(mac) } };
        var devices = new List<DeviceDescription> { Block("00:01.0", "/a.raw"), Block("00:02.0", "/b.raw"), Net("00:03.0", "52:54:00:00:00:01") };

        var started = ProcessWith("--config", ConfigWithDevices("one.json", 1)); // one device configured: slot 1
        var (disks, adapters) = ColdPluggedDevices.Of(definition, new DescribeReply { Vmm = "kvmps-vmm", Version = "t", Pid = started, Devices = devices }, p => p);
        Assert.Equal(["/a.raw"], disks);
        Assert.Empty(adapters);

        (disks, adapters) = ColdPluggedDevices.Of(definition, new DescribeReply { Vmm = "kvmps-vmm", Version = "t", Pid = 0, Devices = devices }, p => p);
        Assert.Equal(["/a.raw", "/b.raw"], disks.Order());
        Assert.Equal(["52:54:00:00:00:01"], adapters);
    }

    [Fact]
    public void Describes_hotplugged_marks_decide_without_reading_the_vmms_command_line()
    {
        var definition = TestDefinitions.Minimal("c") with
        {
            Disks = new ValueList<DiskDefinition>([new DiskDefinition("/a.raw"), new DiskDefinition("/b.raw")]),
        };
        DeviceDescription Block(string pci, string path, bool hot) => new() { Type = "block", Pci = pci, Hotplugged = hot, Options = new() { ["path"] = System.Text.Json.JsonSerializer.SerializeToElement(path) } };
        // Slot 5 cold and slot 1 hot: the marks, not the slot order or a configuration, say which is which.
        var devices = new List<DeviceDescription> { Block("00:01.0", "/a.raw", hot: true), Block("00:05.0", "/b.raw", hot: false) };
        var (disks, _) = ColdPluggedDevices.Of(definition, new DescribeReply { Vmm = "kvmps-vmm", Version = "t", Pid = 0, Devices = devices }, p => p);
        Assert.Equal(["/b.raw"], disks);
    }
}
