using System.Text.Json;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Store;
using KvmPS.Management.Tests;
using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Cli.Tests;

/// <summary>
/// <c>kvmps vm new|set|firmware|balloon|dvd</c> and <c>vm boot-order --first</c>: the verbs New-/Set-KvmVm,
/// Get-/Set-KvmFirmware, Invoke-KvmBalloon and the DVD drive cmdlets run on another host (their --json answers are
/// what the cmdlets read), on a stored VM.
/// </summary>
public sealed class SettingsCliTests : IDisposable
{
    private readonly TempDirectory _root = new();
    private readonly VmStore _store;
    private readonly VmManager _manager;
    private readonly string _iso;

    public SettingsCliTests()
    {
        _store = VmStore.Open(Path.Combine(_root.Path, "s"));
        _manager = new VmManager(_store, options: new VmManagerOptions { QueryTimeout = TimeSpan.FromSeconds(5) });
        _iso = Path.Combine(_root.Path, "install.iso");
        var bytes = new byte[0x9000];
        "CD001"u8.CopyTo(bytes.AsSpan(0x8001));
        File.WriteAllBytes(_iso, bytes);
        _manager.New(TestDefinitions.Minimal("m") with { Boot = new FirmwareBoot("seabios"), Disks = new ValueList<DiskDefinition>([new DiskDefinition("/d/root.raw")]) });
    }

    public void Dispose() => _root.Dispose();

    private (int Code, string Out, string Err) Run(params string[] args) => CliRun.With(_manager, "", args);

    [Fact]
    public void Vm_new_reads_a_vm_json_definition_from_stdin_and_refuses_an_invalid_one_naming_the_field()
    {
        var definition = TestDefinitions.Minimal("fresh") with { Vcpus = new VcpuSettings(2, 4), Notes = "from stdin" };
        var (code, output, error) = CliRun.With(_manager, VmDefinitionJson.Serialize(definition), "vm", "new", "--json", "-");
        Assert.True(code == 0, error);
        using (var json = JsonDocument.Parse(output))
        {
            Assert.Equal("fresh", json.RootElement.GetProperty("name").GetString());
            Assert.Equal("Off", json.RootElement.GetProperty("state").GetString());
            Assert.Equal(2, json.RootElement.GetProperty("vcpuCount").GetInt32());
        }
        Assert.Equal("from stdin", _store.Get("fresh").Notes);

        // The same name again: refused, nothing changed.
        (code, _, error) = CliRun.With(_manager, VmDefinitionJson.Serialize(definition with { Notes = "other" }), "vm", "new", "-");
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("fresh", error);
        Assert.Equal("from stdin", _store.Get("fresh").Notes);

        // Not a definition: an error naming what is wrong, and no VM.
        (code, _, error) = CliRun.With(_manager, "{\"name\": \"bad\", \"memoryStartupBytes\": \"lots\"}", "vm", "new", "-");
        Assert.NotEqual(0, code);
        Assert.Contains("emoryStartupBytes", error);
        Assert.DoesNotContain("bad", _manager.ListNames());

        // A .psd1 given by mistake: a usage error naming the input and where manifests go, not "VM ''".
        (code, _, error) = CliRun.With(_manager, "@{ Name = 'psd' }", "vm", "new", "-");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("standard input is not a valid VM definition", error);
        Assert.Contains("kvmps apply", error);
        Assert.DoesNotContain("VM ''", error);
    }

    [Fact]
    public void Vm_set_changes_the_stored_settings_and_reports_each_change_as_json()
    {
        var (code, output, error) = Run("vm", "set", "m", "--json", "--vcpus", "2", "--max-vcpus", "4", "--memory", "512M", "--autostart", "on",
            "--notes", "web tier", "--log-max", "0", "--log-files", "3");
        Assert.True(code == 0, error);
        var stored = _store.Get("m");
        Assert.Equal(2, stored.Vcpus.Count);
        Assert.Equal(4, stored.Vcpus.Maximum);
        Assert.Equal(512L << 20, stored.Memory.StartupBytes);
        Assert.True(stored.Autostart);
        Assert.Equal("web tier", stored.Notes);
        using var json = JsonDocument.Parse(output);
        Assert.Equal("m", json.RootElement.GetProperty("name").GetString());
        var properties = json.RootElement.GetProperty("changes").EnumerateArray().Select(c => c.GetProperty("property").GetString()).ToList();
        Assert.Contains("Autostart", properties);
        Assert.Contains("Notes", properties);

        Assert.Equal(ExitCodes.Usage, Run("vm", "set", "m", "--autostart", "maybe").Code);
        Assert.Equal(ExitCodes.Usage, Run("vm", "set", "m", "--memory", "512").Code);
        Assert.Equal(ExitCodes.VmNotFound, Run("vm", "set", "nosuch", "--notes", "x").Code);
        Assert.True(_store.Get("m").Autostart);
    }

    [Fact]
    public void Vm_firmware_prints_the_boot_settings_and_boot_order_first_moves_one_device_to_the_front()
    {
        var (code, _, error) = Run("vm", "boot-order", "m", "dvd,disk,network");
        Assert.True(code == 0, error);
        (code, _, error) = Run("vm", "boot-order", "m", "keep", "--first", "network", "--once", "dvd");
        Assert.True(code == 0, error);
        Assert.Equal([BootDevice.Network, BootDevice.Dvd, BootDevice.Disk], _store.Get("m").BootOrder);

        string output;
        (code, output, error) = Run("vm", "firmware", "m", "--json");
        Assert.True(code == 0, error);
        using var json = JsonDocument.Parse(output);
        Assert.Equal("m", json.RootElement.GetProperty("vmName").GetString());
        Assert.Equal(["Network", "Dvd", "Disk"], json.RootElement.GetProperty("bootOrder").EnumerateArray().Select(d => d.GetString()).ToArray());
        Assert.Equal("Network", json.RootElement.GetProperty("firstBootDevice").GetString());
        Assert.Equal("Dvd", json.RootElement.GetProperty("bootOnce").GetString());
        Assert.Equal(ExitCodes.VmNotFound, Run("vm", "firmware", "nosuch").Code);
    }

    [Fact]
    public void Vm_balloon_sets_the_target_of_a_stored_vm_and_prints_its_memory()
    {
        _manager.ChangeSettings("m", new VmSettingsChange { MemoryMinimumBytes = 128L << 20, MemoryMaximumBytes = 512L << 20, BalloonEnabled = true });
        var (code, output, error) = Run("vm", "balloon", "m", "192M", "--json");
        Assert.True(code == 0, error);
        using (var json = JsonDocument.Parse(output))
        {
            Assert.Equal(192L << 20, json.RootElement.GetProperty("targetBytes").GetInt64());
            Assert.Equal(128L << 20, json.RootElement.GetProperty("minimumBytes").GetInt64());
            Assert.Equal(JsonValueKind.Null, json.RootElement.GetProperty("currentBytes").ValueKind);
            Assert.NotEmpty(json.RootElement.GetProperty("changes").EnumerateArray());
        }
        Assert.Equal(192L << 20, _store.Get("m").Memory.StartupBytes);

        // Below the minimum: refused, naming the range; the target stays.
        (code, _, error) = Run("vm", "balloon", "m", "64M");
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Equal(192L << 20, _store.Get("m").Memory.StartupBytes);
        // Without SIZE: the status only, no changes.
        (code, output, _) = Run("vm", "balloon", "m", "--json");
        Assert.Equal(0, code);
        using (var json = JsonDocument.Parse(output))
            Assert.Empty(json.RootElement.GetProperty("changes").EnumerateArray());
    }

    [Fact]
    public void Vm_dvd_adds_lists_and_removes_drives_and_asks_which_when_there_are_several()
    {
        var (code, _, error) = Run("vm", "dvd", "add", "m", _iso, "--json");
        Assert.True(code == 0, error);
        (code, _, error) = Run("vm", "dvd", "add", "m");
        Assert.True(code == 0, error);

        string output;
        (code, output, error) = Run("vm", "dvd", "list", "m", "--json");
        Assert.True(code == 0, error);
        using (var json = JsonDocument.Parse(output))
        {
            var drives = json.RootElement.EnumerateArray().ToList();
            Assert.Equal(2, drives.Count);
            Assert.Equal(_iso, drives[0].GetProperty("path").GetString());
            Assert.Equal(_iso, drives[0].GetProperty("fullPath").GetString());
            Assert.Equal(1, drives[1].GetProperty("controllerLocation").GetInt32());
            Assert.Equal(JsonValueKind.Null, drives[1].GetProperty("path").ValueKind);
        }

        (code, _, error) = Run("vm", "dvd", "remove", "m");
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("2 DVD drives", error);
        (code, _, error) = Run("vm", "dvd", "remove", "m", "--drive", "0");
        Assert.True(code == 0, error);
        Assert.Null(Assert.Single(_store.Get("m").DvdDrives).Path);

        Assert.Equal(ExitCodes.Usage, Run("vm", "dvd", "add", "m", "--pool", "p").Code);
        Assert.Equal(ExitCodes.Usage, Run("vm", "dvd", "eject", "m").Code);
    }
}
