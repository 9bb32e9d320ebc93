using System.Text.Json;
using KvmPS.Contract;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Store;
using KvmPS.Management.Tests;
using KvmPS.Management.Tests.TestSupport;
using KvmPS.Management.Vmm;
using KvmPS.Vmm;

namespace KvmPS.Cli.Tests;

/// <summary><c>kvmps vm attach-iso|eject-iso|boot-order|vnc|screenshot</c>, on a stored VM and on a running one (<see cref="FakeVmm"/>).</summary>
public sealed class MediaCliTests : IDisposable
{
    private readonly TempDirectory _root = new();
    private readonly VmStore _store;
    private readonly VmManager _manager;
    private readonly string _iso;

    public MediaCliTests()
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
    public void Attach_iso_adds_a_drive_then_eject_and_boot_order_edit_the_definition()
    {
        var (code, output, error) = Run("vm", "attach-iso", "m", _iso);
        Assert.True(code == 0, error);
        Assert.Contains("DvdDrives", output);
        Assert.Equal(_iso, Assert.Single(_store.Get("m").DvdDrives).Path);

        (code, _, error) = Run("vm", "eject-iso", "m");
        Assert.True(code == 0, error);
        Assert.Null(_store.Get("m").DvdDrives[0].Path);

        (code, _, error) = Run("vm", "boot-order", "m", "dvd,disk", "--once", "network");
        Assert.True(code == 0, error);
        Assert.Equal([BootDevice.Dvd, BootDevice.Disk], _store.Get("m").BootOrder);
        Assert.Equal(BootDevice.Network, _store.Get("m").BootOnce);

        (code, _, error) = Run("vm", "boot-order", "m", "dvd,floppy");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("'floppy' is not a boot device", error);
    }

    [Fact]
    public void A_file_that_is_not_an_iso_exits_4_naming_it()
    {
        var notIso = Path.Combine(_root.Path, "disk.img");
        File.WriteAllBytes(notIso, new byte[0x9000]);
        var (code, _, error) = Run("vm", "attach-iso", "m", notIso);
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains($"'{notIso}' is not an ISO 9660 image", error);
        Assert.Empty(_store.Get("m").DvdDrives);
        Assert.Equal(ExitCodes.VmNotFound, Run("vm", "attach-iso", "nosuch", _iso).Code);
    }

    [Fact]
    public void On_a_running_vm_attach_iso_sends_media_change_and_vnc_prints_the_socket()
    {
        _manager.AddDvdDrive("m", null);
        _manager.SetDisplay("m", new DisplaySettings("127.0.0.1:5901"));
        var definition = _store.Get("m");
        using var vmm = new FakeVmm(_store.SocketPath("m"), VmmConfigBuilder.BuildConfiguration(definition, _store.SocketPath("m"), "/l").Devices)
        {
            MediaChange = r => new MediaStateReply { Pci = r.Pci, Path = r.Path },
        };
        var (code, output, error) = Run("vm", "attach-iso", "m", _iso);
        Assert.True(code == 0, error);
        Assert.Contains("(applied to the running VM and stored)", output);
        Assert.Equal(("00:02.0", _iso), vmm.Requests.OfType<MediaChangeRequest>().Select(r => (r.Pci, r.Path)).Single());

        vmm.MediaChange = _ => throw new ControlProtocolException(ControlErrorCodes.InvalidState, "the guest has locked the tray");
        (code, _, error) = Run("vm", "eject-iso", "m");
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("the guest has locked the tray", error);

        (code, output, _) = Run("vm", "vnc", "m");
        Assert.Equal(0, code);
        Assert.Equal($"unix:{_store.VncSocketPath("m")}\ntcp:127.0.0.1:5901\n", output);
        (code, output, _) = Run("vm", "vnc", "m", "--json");
        using var json = JsonDocument.Parse(output);
        Assert.Equal("127.0.0.1:5901", json.RootElement.GetProperty("tcp").GetString());
    }

    [Fact]
    public void Vnc_and_screenshot_of_a_vm_without_display_are_refused()
    {
        var (code, _, error) = Run("vm", "vnc", "m");
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("has no display", error);
        (code, _, error) = Run("vm", "screenshot", "m", Path.Combine(_root.Path, "s.png"));
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("has no display", error);
        Assert.Equal(ExitCodes.Usage, Run("vm", "screenshot", "m").Code);
    }
}
