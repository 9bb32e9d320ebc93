using KvmPS.Interop;
using KvmPS.Contract;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Store;
using KvmPS.Management.Tests.Definitions;
using KvmPS.Management.Tests.TestSupport;
using KvmPS.Management.Vmm;
using KvmPS.Vmm;

namespace KvmPS.Management.Tests.Lifecycle;

/// <summary>DVD media, boot order and display on a running VM, against <see cref="FakeVmm"/> answering <c>media.change</c>.</summary>
public sealed class DvdMediaTests : IDisposable
{
    private const string Name = "dvd";
    private readonly TempDirectory _root = new();
    private readonly VmStore _store;
    private readonly VmManager _manager;
    private readonly string _iso1, _iso2;
    private FakeVmm? _vmm;

    public DvdMediaTests()
    {
        _store = VmStore.Open(Path.Combine(_root.Path, "s"));
        _manager = new VmManager(_store, options: new VmManagerOptions { QueryTimeout = TimeSpan.FromSeconds(5) });
        _iso1 = DvdDriveDefinitionTests.MakeIso(_root.Path, "one.iso");
        _iso2 = DvdDriveDefinitionTests.MakeIso(_root.Path, "two.iso");
        _manager.New(TestDefinitions.Minimal(Name) with
        {
            Boot = new FirmwareBoot("seabios"),
            DvdDrives = new ValueList<DvdDriveDefinition>([new DvdDriveDefinition(_iso1)]),
            Display = new DisplaySettings(),
        });
    }

    public void Dispose()
    {
        _vmm?.Dispose();
        _root.Dispose();
    }

    private FakeVmm Boot()
    {
        var definition = _store.Get(Name);
        var devices = VmmConfigBuilder.BuildConfiguration(definition, _store.SocketPath(Name), "/l", p => _store.ResolveDiskPath(Name, p)).Devices;
        _vmm = new FakeVmm(_store.SocketPath(Name), devices)
        {
            MediaChange = r => new MediaStateReply { Pci = r.Pci, Path = r.Path, SizeBytes = r.Path is null ? 0 : new FileInfo(r.Path).Length },
        };
        return _vmm;
    }

    [Fact]
    public void Offline_the_definition_is_edited_and_nothing_is_sent()
    {
        var result = _manager.SetDvdMedia(Name, 0, _iso2);
        Assert.Equal(ChangeApplication.Stored, Assert.Single(result.Changes).Application);
        Assert.Equal(_iso2, _store.Get(Name).DvdDrives[0].Path);
        _manager.SetDvdMedia(Name, 0, null);
        Assert.Null(_store.Get(Name).DvdDrives[0].Path);
    }

    [Fact]
    public void On_a_running_vm_eject_and_insert_send_media_change_to_the_drives_pci_address()
    {
        var vmm = Boot();
        var ejected = _manager.SetDvdMedia(Name, 0, null);
        Assert.Equal(ChangeApplication.AppliedLive, Assert.Single(ejected.Changes).Application);
        var inserted = _manager.SetDvdMedia(Name, 0, _iso2);
        Assert.Equal(ChangeApplication.AppliedLive, Assert.Single(inserted.Changes).Application);

        var sent = vmm.Requests.OfType<MediaChangeRequest>().ToList();
        Assert.Equal([("00:01.0", null), ("00:01.0", _iso2)], sent.Select(r => (r.Pci, r.Path)));
        Assert.Equal(_iso2, _store.Get(Name).DvdDrives[0].Path);
    }

    [Fact]
    public void A_live_insert_passes_the_iso_open_read_only_and_an_eject_passes_nothing()
    {
        var vmm = Boot();
        vmm.TakesPassedFiles = true;
        _manager.SetDvdMedia(Name, 0, null);
        var inserted = _manager.SetDvdMedia(Name, 0, _iso2);
        Assert.Equal(ChangeApplication.AppliedLive, Assert.Single(inserted.Changes).Application);

        var sent = vmm.Requests.OfType<MediaChangeRequest>().ToList();
        Assert.Equal([(null, null), (_iso2, (int?)1)], sent.Select(r => (r.Path, r.PassedFiles)));
        Assert.Equal([$"{ResolvedPath.Of(_iso2)} read-only"], vmm.PassedFiles);
    }

    [Fact]
    public void A_vmm_from_before_passed_media_is_asked_again_by_path()
    {
        var vmm = Boot(); // TakesPassedFiles false: refuses 'passed_files' as such a VMM does
        var inserted = _manager.SetDvdMedia(Name, 0, _iso2);
        Assert.Equal(ChangeApplication.AppliedLive, Assert.Single(inserted.Changes).Application);
        var sent = Assert.Single(vmm.Requests.OfType<MediaChangeRequest>());
        Assert.Equal((_iso2, (int?)null), (sent.Path, sent.PassedFiles));
        Assert.Empty(vmm.PassedFiles);
        Assert.Equal(_iso2, _store.Get(Name).DvdDrives[0].Path);
    }

    [Fact]
    public void Opening_an_iso_for_the_vmm_opens_it_read_only_and_names_a_missing_one()
    {
        var file = Assert.Single(VmmPassedFiles.OpenIso(_iso2));
        using (file)
        {
            const int F_GETFL = 3, O_ACCMODE = 3;
            Assert.Equal(Libc.O_RDONLY, Libc.FcntlInt((int)file.DangerousGetHandle(), F_GETFL, 0) & O_ACCMODE);
        }
        var missing = Path.Combine(_root.Path, "gone.iso");
        var e = Assert.Throws<PassedFileException>(() => VmmPassedFiles.OpenIso(missing));
        Assert.Equal(missing, e.What);
        Assert.Contains($"'{missing}' cannot be opened for the VMM", e.Message);
    }

    [Fact]
    public void A_locked_tray_is_refused_with_the_vmms_words_and_nothing_is_stored()
    {
        var vmm = Boot();
        vmm.MediaChange = _ => throw new ControlProtocolException(ControlErrorCodes.InvalidState, "the guest has locked the tray of the drive at 00:01.0 (PREVENT ALLOW MEDIUM REMOVAL); use force to eject anyway");
        var e = Assert.Throws<ManagementValidationException>(() => _manager.SetDvdMedia(Name, 0, null));
        Assert.Equal("DvdDrives[0]", e.Property);
        Assert.Contains("VM 'dvd'", e.Message);
        Assert.Contains("the guest has locked the tray of the drive at 00:01.0", e.Message);
        Assert.Equal(_iso1, _store.Get(Name).DvdDrives[0].Path);
    }

    [Fact]
    public void A_bad_iso_is_refused_before_the_vmm_is_asked()
    {
        var vmm = Boot();
        var notIso = Path.Combine(_root.Path, "x.img");
        File.WriteAllBytes(notIso, new byte[100]);
        var e = Assert.Throws<IsoImageException>(() => _manager.SetDvdMedia(Name, 0, notIso));
        Assert.Contains("too short", e.Message);
        Assert.Empty(vmm.Requests.OfType<MediaChangeRequest>());
    }

    [Fact]
    public void Adding_a_drive_or_changing_the_boot_order_on_a_running_vm_waits_for_the_next_start()
    {
        Boot();
        var added = _manager.AddDvdDrive(Name, null);
        Assert.Equal(ChangeApplication.RestartNeeded, Assert.Single(added.Changes).Application);
        var firmware = _manager.SetFirmware(Name, [BootDevice.Dvd, BootDevice.Disk], BootDevice.Dvd);
        Assert.Equal([("BootOrder", ChangeApplication.RestartNeeded), ("BootOnce", ChangeApplication.Stored)],
            firmware.Changes.Select(c => (c.Property, c.Application)));
        Assert.Throws<ManagementValidationException>(() => _manager.SetDvdMedia(Name, 5, null));
    }

    [Fact]
    public void Vnc_endpoints_come_from_display_get_when_running_and_from_the_definition_otherwise()
    {
        var off = _manager.GetVncEndpoints(Name)!;
        Assert.Equal((_store.VncSocketPath(Name), (string?)null, false), (off.UnixPath, off.Tcp, off.Running));
        var vmm = Boot();
        vmm.Display = new DisplayStateReply { Pci = "00:02.0", Enabled = true, WidthPixels = 800, HeightPixels = 600, VncUnixPath = "/run/x/vnc.sock", VncClients = 2 };
        var on = _manager.GetVncEndpoints(Name)!;
        Assert.Equal(("/run/x/vnc.sock", true, 800, 2), (on.UnixPath, on.Running, on.WidthPixels, on.Clients));
        Assert.Equal(["vncviewer /run/x/vnc.sock"], on.ViewerCommands);
    }

    [Fact]
    public void A_screenshot_of_a_vm_without_display_or_not_running_is_refused_naming_it()
    {
        var off = Assert.Throws<VmStateException>(() => _manager.Screenshot(Name, null));
        Assert.Contains("a screenshot needs it running", off.Message);
        _manager.SetDisplay(Name, null);
        var none = Assert.Throws<VmStateException>(() => _manager.Screenshot(Name, null));
        Assert.Contains("VM 'dvd' has no display", none.Message);
    }
}
