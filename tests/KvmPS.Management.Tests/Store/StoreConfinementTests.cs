using KvmPS.Interop;
using KvmPS.Management.Definitions;
using KvmPS.Management.DesiredState;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Store;
using KvmPS.Management.Tests.TestSupport;
using KvmPS.Management.Vmm;

#pragma warning disable CA1416 // Linux only

namespace KvmPS.Management.Tests.Store;

/// <summary>Issue 17 item 2: store modes and owner, links in the store, and the folders a VM's files may come from.</summary>
public sealed class StoreConfinementTests : IDisposable
{
    private const UnixFileMode Dir0700 = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
    private const UnixFileMode File0600 = UnixFileMode.UserRead | UnixFileMode.UserWrite;
    private const UnixFileMode Open0755 = Dir0700 | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute;

    private readonly TempDirectory _temp = new();
    private readonly string _root;
    private readonly TempDirectory _outside = new();

    public StoreConfinementTests() => _root = Path.Combine(_temp.Path, "store");

    public void Dispose()
    {
        _temp.Dispose();
        _outside.Dispose();
    }

    private VmStore OpenStore(params string[] allowed) => VmStore.Open(_root, allowedPaths: AllowedPaths.Of(_root, allowed));

    private static UnixFileMode ModeOf(string path) => File.GetUnixFileMode(path);

    // ---- modes and owner --------------------------------------------------------------------------

    [Fact]
    public void A_new_store_has_0700_folders_and_0600_files()
    {
        var store = OpenStore();
        store.Create(TestDefinitions.Minimal("vm1"));
        var image = Path.Combine(store.DiskDirectory("vm1"), "disk0.raw");
        StorageDiskImageCreator.Create(image, DiskFormat.Raw, 1 << 20, null);

        foreach (var folder in new[] { _root, store.VmsDirectory, store.VmDirectory("vm1"), store.DiskDirectory("vm1") })
            Assert.True(ModeOf(folder) == Dir0700, $"{folder}: {ModeOf(folder)}");
        foreach (var file in new[] { store.LockPath, store.DefinitionPath("vm1"), image })
            Assert.True(ModeOf(file) == File0600, $"{file}: {ModeOf(file)}");
    }

    [Fact]
    public void A_store_owned_by_another_user_is_refused_naming_the_path_and_the_fix()
    {
        Directory.CreateDirectory(_root, Dir0700);
        var other = FileOwnership.EffectiveUid == 12345 ? 12346 : 12345;
        var error = Assert.Throws<StoreConfinementException>(() =>
            StoreConfinement.Judge(_root, FileOwnership.Of(_root)!.Value with { OwnerUid = (uint)other }, FileOwnership.EffectiveUid));
        Assert.Contains(_root, error.Message);
        Assert.Contains($"uid {other}", error.Message);
        Assert.Contains("chown", error.Fix);

        if (FileOwnership.EffectiveUid != 0)
            return; // only root can give a folder away; the decision itself is checked above
        Directory.CreateDirectory(Path.Combine(_root, "vms"), Dir0700);
        File.SetUnixFileMode(_root, Dir0700);
        Chown(_root, other);
        var opened = Assert.Throws<StoreConfinementException>(() => OpenStore());
        Assert.Equal(_root, opened.Path);
    }

    [Fact]
    public void A_store_writable_by_others_is_refused_and_left_unchanged()
    {
        Directory.CreateDirectory(_root);
        var groupWritable = Dir0700 | UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute;
        File.SetUnixFileMode(_root, groupWritable);
        var error = Assert.Throws<StoreConfinementException>(() => OpenStore());
        Assert.Equal(_root, error.Path);
        Assert.Contains("writable by group or others", error.Message);
        Assert.Contains($"chmod 700 '{_root}'", error.Message);
        Assert.Equal(groupWritable, ModeOf(_root));
        Assert.False(Directory.Exists(Path.Combine(_root, "vms")));
    }

    [Fact]
    public void A_store_root_that_is_a_link_is_judged_by_the_folder_it_leads_to()
    {
        var real = Path.Combine(_outside.Path, "real-store");
        Directory.CreateDirectory(real, Dir0700);
        File.CreateSymbolicLink(_root, real);
        var store = OpenStore();
        store.Create(TestDefinitions.Minimal("vm1"));
        Assert.True(File.Exists(Path.Combine(real, "vms", "vm1", "vm.json")));

        File.SetUnixFileMode(real, Dir0700 | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute);
        Assert.Equal(real, Assert.Throws<StoreConfinementException>(() => OpenStore()).Path);
    }

    [Fact]
    public void A_vms_folder_writable_by_others_is_refused()
    {
        Directory.CreateDirectory(Path.Combine(_root, "vms"));
        File.SetUnixFileMode(_root, Dir0700);
        File.SetUnixFileMode(Path.Combine(_root, "vms"), Dir0700 | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute);
        var error = Assert.Throws<StoreConfinementException>(() => OpenStore());
        Assert.Equal(Path.Combine(_root, "vms"), error.Path);
    }

    [Fact]
    public void An_old_store_of_ours_that_others_can_only_read_is_tightened_in_place()
    {
        // As an older KvmPS left it: 0755 folders, 0644 files; and a link in it, which is left alone.
        var vmDirectory = Path.Combine(_root, "vms", "old");
        Directory.CreateDirectory(Path.Combine(vmDirectory, "disks"));
        var open0644 = File0600 | UnixFileMode.GroupRead | UnixFileMode.OtherRead;
        File.WriteAllBytes(Path.Combine(vmDirectory, "vm.json"), VmDefinitionJson.SerializeToUtf8Bytes(TestDefinitions.Minimal("old")));
        File.WriteAllText(Path.Combine(vmDirectory, "serial.log"), "console");
        var outsideFile = Path.Combine(_outside.Path, "elsewhere");
        File.WriteAllText(outsideFile, "x");
        File.SetUnixFileMode(outsideFile, open0644);
        File.CreateSymbolicLink(Path.Combine(vmDirectory, "disks", "link.raw"), outsideFile);
        foreach (var folder in new[] { _root, Path.Combine(_root, "vms"), vmDirectory, Path.Combine(vmDirectory, "disks") })
            File.SetUnixFileMode(folder, Open0755);
        foreach (var file in new[] { "vm.json", "serial.log" })
            File.SetUnixFileMode(Path.Combine(vmDirectory, file), open0644);

        var store = OpenStore();

        Assert.Equal("old", store.Get("old").Name);
        foreach (var folder in new[] { _root, Path.Combine(_root, "vms"), vmDirectory, Path.Combine(vmDirectory, "disks") })
            Assert.True(ModeOf(folder) == Dir0700, $"{folder}: {ModeOf(folder)}");
        foreach (var file in new[] { "vm.json", "serial.log" })
            Assert.Equal(File0600, ModeOf(Path.Combine(vmDirectory, file)));
        Assert.Equal(open0644, ModeOf(outsideFile)); // the link was not followed
    }

    [Fact]
    public void A_store_on_a_file_system_that_cannot_hold_owner_only_modes_is_refused()
    {
        // procfs keeps its own modes (chmod fails), as vfat or some network mounts ignore them.
        var error = Assert.Throws<StoreConfinementException>(() => VmStore.Open("/proc/self/fdinfo", allowedPaths: AllowedPaths.StoreOnly("/proc/self/fdinfo")));
        Assert.Contains("cannot hold owner-only modes", error.Message);
        Assert.Equal(ResolvedPath.Of("/proc/self/fdinfo"), error.Path); // /proc/PID/fdinfo: the root link resolved
    }

    // ---- links in the store -----------------------------------------------------------------------

    [Fact]
    public void A_planted_vmm_log_link_stops_the_start_and_is_not_written_through()
    {
        var store = OpenStore();
        store.Create(TestDefinitions.Minimal("vm1"));
        var victim = Path.Combine(_outside.Path, "root-only");
        File.WriteAllText(victim, "secret\n");
        File.CreateSymbolicLink(store.VmmLogPath("vm1"), victim);

        var launcher = new VmmProcessLauncher("/bin/true");
        var error = Assert.Throws<VmmLaunchException>(() => launcher.Launch(store, store.Get("vm1")));
        Assert.Contains(store.VmmLogPath("vm1"), error.Message);
        Assert.Contains("symbolic link", error.Message);
        Assert.Equal("secret\n", File.ReadAllText(victim));
    }

    [Fact]
    public void A_planted_lock_file_link_is_refused()
    {
        var store = OpenStore();
        store.Create(TestDefinitions.Minimal("vm1"));
        var victim = Path.Combine(_outside.Path, "victim");
        File.CreateSymbolicLink(store.SocketLockPath("vm1"), victim);
        Assert.Throws<SymlinkRefusedException>(() => FileLock.TryAcquire(store.SocketLockPath("vm1")));
        Assert.False(File.Exists(victim));

        File.Delete(store.LockPath);
        File.CreateSymbolicLink(store.LockPath, victim);
        var error = Assert.Throws<VmStoreException>(() => store.Create(TestDefinitions.Minimal("vm2")));
        Assert.Contains(store.LockPath, error.Message);
        Assert.False(File.Exists(victim));
    }

    [Fact]
    public void A_vm_folder_replaced_by_a_link_is_not_written_through()
    {
        var store = OpenStore();
        store.Create(TestDefinitions.Minimal("vm1"));
        Directory.Delete(store.VmDirectory("vm1"), recursive: true);
        Directory.CreateSymbolicLink(store.VmDirectory("vm1"), _outside.Path);
        Assert.Throws<SymlinkRefusedException>(() => NoFollowFile.AppendStream(store.SerialLogPath("vm1")).Dispose());
        Assert.Empty(Directory.GetFileSystemEntries(_outside.Path));
    }

    // ---- allowed paths ----------------------------------------------------------------------------

    [Fact]
    public void A_disk_outside_the_store_and_the_allowed_folders_is_refused_naming_the_path_and_the_setting()
    {
        var store = OpenStore();
        var disk = Path.Combine(_outside.Path, "shadow.raw");
        var vm = TestDefinitions.Minimal("vm1") with { Disks = new[] { new DiskDefinition(disk) } };
        var error = Assert.Throws<PathNotAllowedException>(() => store.Create(vm));
        Assert.Equal(disk, error.Path);
        Assert.Equal("Disks[0].Path", error.Property);
        Assert.Contains(AllowedPaths.Variable, error.Message);
        Assert.Contains(Path.Combine(_root, AllowedPaths.SettingFileName), error.Message);
        Assert.False(store.Exists("vm1"));

        var allowing = OpenStore(_outside.Path);
        allowing.Create(vm);
        Assert.True(allowing.Exists("vm1"));
    }

    [Fact]
    public void Kernel_initrd_firmware_and_backing_images_are_checked_too_but_not_the_built_in_firmware()
    {
        var store = OpenStore();
        var outside = Path.Combine(_outside.Path, "f");
        var cases = new (VmDefinition Vm, string Property)[]
        {
            (TestDefinitions.Minimal("k") with { Boot = new DirectKernelBoot(outside) }, "Boot.KernelPath"),
            (TestDefinitions.Minimal("i") with { Boot = new DirectKernelBoot(Path.Combine(_root, "vmlinuz"), outside) }, "Boot.InitrdPath"),
            (TestDefinitions.Minimal("f") with { Boot = new FirmwareBoot(outside, 0), Disks = new[] { new DiskDefinition("d.raw") } }, "Boot.FirmwarePath"),
            (TestDefinitions.Minimal("b") with { Disks = new[] { new DiskDefinition("d.qcow2", DiskFormat.Qcow2, 1 << 20, false, outside) } }, "Disks[0].BackingImagePath"),
        };
        foreach (var (vm, property) in cases)
            Assert.Equal(property, Assert.Throws<PathNotAllowedException>(() => store.Create(vm)).Property);

        store.Create(TestDefinitions.Minimal("sb") with { Boot = new FirmwareBoot(AllowedPaths.BuiltInFirmwareAlias, 0), Disks = new[] { new DiskDefinition("d.raw") } });
    }

    [Fact]
    public void A_link_in_the_store_leading_out_of_it_is_refused()
    {
        var store = OpenStore();
        store.Create(TestDefinitions.Minimal("vm1"));
        var target = Path.Combine(_outside.Path, "target.raw");
        File.WriteAllBytes(target, new byte[512]);
        File.CreateSymbolicLink(Path.Combine(store.DiskDirectory("vm1"), "escape.raw"), target);
        var error = Assert.Throws<PathNotAllowedException>(() => store.Update(store.Get("vm1") with { Disks = new[] { new DiskDefinition("escape.raw") } }));
        Assert.Equal(Path.Combine(store.DiskDirectory("vm1"), "escape.raw"), error.Path);
    }

    [Fact]
    public void The_allowed_folders_come_from_the_environment_and_the_store_file_and_must_be_absolute()
    {
        Directory.CreateDirectory(_root);
        File.WriteAllText(Path.Combine(_root, AllowedPaths.SettingFileName), "# images\n/srv/images   \n\n/opt/fw # firmware\n");
        var allowed = AllowedPaths.Load(_root, name => name == AllowedPaths.Variable ? "/data/a:/data/b/" : null);
        Assert.Equal(["/data/a", "/data/b", "/srv/images", "/opt/fw"], allowed.Listed);
        Assert.True(allowed.IsAllowed("/srv/images/x.qcow2"));
        Assert.False(allowed.IsAllowed("/srv/images-other/x.qcow2"));
        Assert.True(allowed.IsAllowed(Path.Combine(_root, "vms", "x", "disks", "d.raw")));

        var fromEnvironment = Assert.Throws<VmStoreException>(() => AllowedPaths.Load(_root, name => name == AllowedPaths.Variable ? "/ok:images" : null));
        Assert.Contains("'images' is a relative path", fromEnvironment.Message);
        Assert.Contains(AllowedPaths.Variable, fromEnvironment.Message);
        File.WriteAllText(Path.Combine(_root, AllowedPaths.SettingFileName), "/ok\n./images\n");
        var fromFile = Assert.Throws<VmStoreException>(() => AllowedPaths.Load(_root, _ => null));
        Assert.Contains($"{Path.Combine(_root, AllowedPaths.SettingFileName)} line 2", fromFile.Message);
    }

    [Fact]
    public void Plan_refuses_a_disk_path_that_apply_would_refuse()
    {
        var store = OpenStore();
        var reconciler = new Reconciler(new VmManager(store, new VmmProcessLauncher("/nonexistent/kvmps-vmm")));
        var outside = DesiredStateReader.Parse($"@{{ Name = 'web'; MemoryStartupBytes = 128MB; Disks = @( @{{ Path = '{_outside.Path}/d.raw' }} ) }}", "m.psd1");
        var error = Assert.Throws<DesiredStateException>(() => reconciler.Plan(outside));
        Assert.Equal("Disks[0].Path", error.Property);
        Assert.IsType<PathNotAllowedException>(error.InnerException);

        var escaping = DesiredStateReader.Parse("@{ Name = 'web'; MemoryStartupBytes = 128MB; Disks = @( @{ Path = '../../other/disks/d.raw' } ) }", "m.psd1");
        Assert.IsType<StorePathEscapeException>(Assert.Throws<DesiredStateException>(() => reconciler.Plan(escaping)).InnerException);

        var inside = DesiredStateReader.Parse("@{ Name = 'web'; MemoryStartupBytes = 128MB; Disks = @( @{ Path = 'd.raw'; SizeBytes = 1MB } ) }", "m.psd1");
        Assert.Equal(ReconcileActionKind.Create, Assert.Single(reconciler.Plan(inside).Actions).Kind);
    }

    private static void Chown(string path, int uid)
    {
        using var process = System.Diagnostics.Process.Start("chown", [uid.ToString(System.Globalization.CultureInfo.InvariantCulture), path]);
        process.WaitForExit();
        Assert.Equal(0, process.ExitCode);
    }
}
