using KvmPS.Contract;
using KvmPS.Management.Definitions;
using KvmPS.Management.DesiredState;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Tests.TestSupport;
using KvmPS.Management.Vmm;

namespace KvmPS.Management.Tests.Vmm;

/// <summary>Issue 17 item 3: serial.log and vmm.log bounded by per-VM settings (LogMaxBytes, LogFileCount).</summary>
public sealed class LogLimitTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void The_limits_default_to_the_vmms_and_reach_its_configuration()
    {
        var plain = TestDefinitions.Minimal("vm1");
        Assert.Equal(4L << 20, plain.LogMaxBytes);
        Assert.Equal(3, plain.LogFileCount);

        var bounded = plain with { LogMaxBytes = 64 << 10, LogFileCount = 5 };
        var configuration = VmmConfigBuilder.BuildConfiguration(bounded, "/s/control.sock", "/s/serial.log");
        Assert.Equal(64 << 10, configuration.SerialLogMaxBytes);
        Assert.Equal(5, configuration.SerialLogFiles);
        var json = System.Text.Encoding.UTF8.GetString(ContractJson.WriteConfiguration(configuration));
        Assert.Matches("\"serial_log_max_bytes\": *65536", json);
        Assert.Matches("\"serial_log_files\": *5", json);
    }

    [Fact]
    public void A_restore_passes_the_vms_limits_as_flags()
    {
        var definition = TestDefinitions.Minimal("vm1") with { LogMaxBytes = 0, LogFileCount = 7 };
        var argv = VmmProcessLauncher.RestoreArguments("/b", "/d", paused: false, "/s", "/l", definition);
        Assert.Equal("0", argv[Array.IndexOf(argv, "--serial-log-max") + 1]);
        Assert.Equal("7", argv[Array.IndexOf(argv, "--serial-log-files") + 1]);
    }

    [Fact]
    public void The_settings_round_trip_through_vm_json_and_manifests_and_bad_ones_are_refused_by_name()
    {
        var definition = TestDefinitions.Minimal("vm1") with { LogMaxBytes = 1 << 20, LogFileCount = 0 };
        Assert.Equal(definition, VmDefinitionJson.Deserialize(VmDefinitionJson.Serialize(definition)));

        var desired = DesiredStateReader.Parse("@{ Name = 'vm1'; MemoryStartupBytes = 256MB; LogMaxBytes = 2MB; LogFileCount = 10 }", "m.psd1");
        var vm = Assert.Single(desired.Vms);
        Assert.Equal(2L << 20, vm.Definition!.LogMaxBytes);
        Assert.Equal(10, vm.Definition.LogFileCount);
        Assert.Contains("LogMaxBytes", vm.ManagedProperties);

        var exported = ManifestExporter.Write([(definition with { LogMaxBytes = 2L << 20, LogFileCount = 10 }, VmState.Off)]);
        Assert.Matches(@"LogMaxBytes\s*=\s*2MB", exported);
        Assert.Matches(@"LogFileCount\s*=\s*10", exported);

        Assert.Equal("LogMaxBytes", Assert.Throws<VmDefinitionException>(() => (definition with { LogMaxBytes = 100 }).Validate()).Property);
        Assert.Equal("LogFileCount", Assert.Throws<VmDefinitionException>(() => (definition with { LogFileCount = 101 }).Validate()).Property);
    }

    [Fact]
    public void Changing_a_limit_on_a_running_vm_needs_no_restart()
    {
        var before = TestDefinitions.Minimal("vm1");
        var after = new VmSettingsChange { LogMaxBytes = 8L << 20, LogFileCount = 2 }.ApplyTo(before);
        var changes = VmDefinitionDiff.Compare(before, after);
        Assert.Equal(["LogMaxBytes", "LogFileCount"], changes.Select(c => c.Property));
        Assert.All(changes, c => Assert.Contains(c.Property, VmDefinitionDiff.HostOnlyProperties));
    }

    [Fact]
    public void Vmm_log_rotates_at_the_limit_keeping_the_given_number_of_files()
    {
        var log = Path.Combine(_dir.Path, "vmm.log");
        File.WriteAllText(log, "small");
        Assert.False(VmmLogRotation.RotateIfFull(log, 4096, 2));

        for (int run = 1; run <= 4; run++)
        {
            File.WriteAllText(log, new string((char)('0' + run), 5000));
            Assert.True(VmmLogRotation.RotateIfFull(log, 4096, 2));
            Assert.False(File.Exists(log));
        }
        Assert.Equal('4', File.ReadAllText(log + ".1")[0]);
        Assert.Equal('3', File.ReadAllText(log + ".2")[0]);
        Assert.False(File.Exists(log + ".3"));

        File.WriteAllText(log, new string('x', 5000));
        Assert.False(VmmLogRotation.RotateIfFull(log, 0, 2)); // 0: no limit
        Assert.True(VmmLogRotation.RotateIfFull(log, 4096, 0)); // no kept files: start over
        Assert.False(File.Exists(log));
    }

    [Fact]
    public void A_start_rotates_a_full_vmm_log_first()
    {
        using var root = new TempDirectory();
        var store = KvmPS.Management.Store.VmStore.Open(root.Path);
        store.Create(TestDefinitions.Minimal("vm1") with { LogMaxBytes = 4096, LogFileCount = 1 });
        File.WriteAllText(store.VmmLogPath("vm1"), new string('o', 8000));
        var process = new VmmProcessLauncher("/bin/true").Launch(store, store.Get("vm1"));
        process.Exited.Wait(TimeSpan.FromSeconds(10));
        Assert.Equal(8000, new FileInfo(store.VmmLogPath("vm1") + ".1").Length);
        Assert.True(new FileInfo(store.VmmLogPath("vm1")).Length < 4096);
    }
}
