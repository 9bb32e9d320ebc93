using System.Diagnostics;
using System.Text.Json;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Store;
using KvmPS.Management.Tests;
using Xunit.Abstractions;

namespace KvmPS.Cli.Tests.TwoHosts;

/// <summary>
/// <c>kvmps vm migrate NAME --to h2 --include-storage</c> between the namespace hosts (docs/migration.md, "Moving with
/// the disks"): a running built-in guest with a qcow2 disk in h1's store moves with its disk into h2's store; the
/// copy holds the same guest-visible contents (qemu-img compare), h1 keeps its image, and an image already at the
/// destination path is refused before anything is sent.
/// </summary>
[Collection(TwoHostCollection.Name)]
public sealed class MoveStorageCliTests(TwoHostFixture hosts, ITestOutputHelper output) : IDisposable
{
    private string H2 => "root@" + hosts.Host2.Address;

    private Dictionary<string, string> Key => new() { ["KVMPS_SSH_KEY"] = hosts.ClientKeyPath };

    private static VmManager Manager(TestHost host) => new(VmStore.Open(host.StoreHome));

    /// <summary>A running guest on h1 whose qcow2 disk (outside the stores, as a user's image) it wrote at boot.</summary>
    private string StartWithDisk(string name)
    {
        var image = Path.Combine(hosts.Directory, $"{name}-src", "data.qcow2");
        Directory.CreateDirectory(Path.GetDirectoryName(image)!);
        KvmPS.Storage.DiskImageFactory.CreateQcow2(image, 16 << 20);
        Manager(hosts.Host1).New(TestDefinitions.Minimal(name) with
        {
            Disks = new[] { new DiskDefinition(image, DiskFormat.Qcow2) },
            Boot = new DefaultGuestBoot("kvmps.run=blk write 0 4096 5"),
        });
        var (code, _, error) = hosts.Kvmps(hosts.Host1, null, "vm", "start", name);
        Assert.True(code == 0, $"vm start: exit {code}: {error}");
        var serial = VmStore.Open(hosts.Host1.StoreHome).SerialLogPath(name);
        var clock = Stopwatch.StartNew();
        while (!(File.Exists(serial) && File.ReadAllText(serial).Contains("blk: wrote 4096")))
        {
            Assert.True(clock.Elapsed.TotalSeconds < 60, "the guest did not write its disk");
            Thread.Sleep(50);
        }
        return image;
    }

    /// <summary>
    /// Shared storage (the default): the image stays where it is and h2's VMM takes it over at the hand-over — h1's VMM
    /// releases it at the pause, h2's opens it then (docs/migration.md). The guest writes the disk before and after.
    /// </summary>
    [TwoHostVmFact]
    public void Migrate_on_shared_storage_hands_the_disk_over_and_the_guest_writes_it_on_h2()
    {
        var image = StartWithDisk("shared");
        var (code, text, error) = hosts.KvmpsWithin(TimeSpan.FromMinutes(3), hosts.Host1, Key, "vm", "migrate", "shared", "--to", H2, "--json");
        Assert.True(code == 0, $"vm migrate: exit {code}: {text} {error}");
        output.WriteLine(text + error);
        var h2 = VmStore.Open(hosts.Host2.StoreHome);
        Assert.Equal(image, Manager(hosts.Host2).Get("shared").Definition.Disks[0].Path);
        Assert.Equal(VmState.Running, Manager(hosts.Host2).Get("shared").State);
        Assert.Null(Manager(hosts.Host1).TryGet("shared"));
        Assert.Contains("disks opened at the hand-over", File.ReadAllText(h2.VmmLogPath("shared")));
        // The image is h2's VMM's now: qemu-img cannot take the write lock while it runs.
        var locked = Process.Start(new ProcessStartInfo("qemu-img", ["check", image]) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        string lockText = locked.StandardError.ReadToEnd();
        locked.WaitForExit(60_000);
        Assert.NotEqual(0, locked.ExitCode);
        Assert.Contains("lock", lockText);
        Manager(hosts.Host2).Stop("shared", force: true);
        var check = Process.Start(new ProcessStartInfo("qemu-img", ["check", image]) { RedirectStandardOutput = true })!;
        check.WaitForExit(60_000);
        Assert.Equal(0, check.ExitCode);
    }

    [TwoHostVmFact]
    public void Migrate_with_include_storage_copies_the_disk_into_h2s_store_and_keeps_h1s_image()
    {
        var original = StartWithDisk("carrier");
        var (code, text, error) = hosts.KvmpsWithin(TimeSpan.FromMinutes(3), hosts.Host1, Key, "vm", "migrate", "carrier", "--to", H2, "--include-storage", "--json");
        Assert.True(code == 0, $"vm migrate: exit {code}: {text} {error}");
        output.WriteLine(text + error);
        using (var json = JsonDocument.Parse(text))
            Assert.InRange(json.RootElement.GetProperty("disk_bytes_sent").GetInt64(), 4096 * 512, 16 << 20);
        var h2 = VmStore.Open(hosts.Host2.StoreHome);
        var copied = Path.Combine(h2.DiskDirectory("carrier"), "data.qcow2");
        Assert.True(File.Exists(copied));
        Assert.Equal("data.qcow2", Manager(hosts.Host2).Get("carrier").Definition.Disks[0].Path);
        Assert.Equal(VmState.Running, Manager(hosts.Host2).Get("carrier").State);
        Assert.Null(Manager(hosts.Host1).TryGet("carrier"));
        Assert.True(File.Exists(original), "h1's image stays where it was");

        Manager(hosts.Host2).Stop("carrier", force: true);
        var compare = Process.Start(new ProcessStartInfo("qemu-img", ["compare", "-f", "qcow2", "-F", "qcow2", original, copied]) { RedirectStandardOutput = true })!;
        compare.WaitForExit(60_000);
        Assert.Equal(0, compare.ExitCode);
    }

    [TwoHostVmFact]
    public void An_image_already_at_the_destination_path_is_refused_naming_the_disk()
    {
        StartWithDisk("blocked");
        var h2 = VmStore.Open(hosts.Host2.StoreHome);
        Directory.CreateDirectory(h2.DiskDirectory("blocked"));
        var existing = Path.Combine(h2.DiskDirectory("blocked"), "data.qcow2");
        File.WriteAllText(existing, "not to be overwritten");
        try
        {
            var (code, _, error) = hosts.KvmpsWithin(TimeSpan.FromMinutes(2), hosts.Host1, Key, "vm", "migrate", "blocked", "--to", H2, "--include-storage");
            Assert.Equal(ExitCodes.OperationFailed, code);
            Assert.Contains("its disk 'data.qcow2' cannot be copied here", error);
            Assert.Contains("already exists", error);
            Assert.Equal("not to be overwritten", File.ReadAllText(existing));
            Assert.Equal(VmState.Running, Manager(hosts.Host1).Get("blocked").State);
        }
        finally
        {
            Directory.Delete(h2.VmDirectory("blocked"), recursive: true);
        }
    }

    public void Dispose()
    {
        foreach (var host in new[] { hosts.Host1, hosts.Host2 })
            foreach (var vm in Manager(host).List())
                try
                {
                    Manager(host).Remove(vm.Definition.Name, force: true);
                }
                catch (Exception e) when (e is VmManagementException or VmStoreException)
                {
                }
    }
}
