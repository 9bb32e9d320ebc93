using KvmPS.Management.Definitions;
using KvmPS.Management.DesiredState;
using KvmPS.Management.Lifecycle;

namespace KvmPS.Management.Tests.DesiredState;

/// <summary>Manifests with DvdDrives, BootOrder and Display: plan (live media change vs next start) and export.</summary>
public sealed class DvdDesiredStateTests
{
    private const string Manifest = """
        @{ VirtualMachines = @( @{
            Name = 'inst'; State = 'Running'; MemoryStartupBytes = 256MB; Boot = @{ FirmwarePath = 'seabios' }
            DvdDrives = @( @{ Path = '/srv/iso/new.iso' } )
            BootOrder = @('Dvd', 'Disk')
            Display = @{ Vnc = '127.0.0.1:5901' }
        } ) }
        """;

    private static VmDefinition Current(string iso, params BootDevice[] order) => new()
    {
        Name = "inst",
        Memory = MemorySettings.Fixed(256L << 20),
        Boot = new FirmwareBoot("seabios"),
        DvdDrives = new ValueList<DvdDriveDefinition>([new DvdDriveDefinition(iso)]),
        BootOrder = new ValueList<BootDevice>(order),
        Display = new DisplaySettings("127.0.0.1:5901"),
    };

    private static ReconcilePlan Plan(VmDefinition current, LiveLimits limits) =>
        ReconcilePlanner.Plan(DesiredStateReader.Parse(Manifest, "m.psd1"),
            new Dictionary<string, ActualVm> { ["inst"] = new("inst", current, VmState.Running, true, limits) });

    private static string Steps(ReconcilePlan plan) => string.Join(" ", plan.Actions.Select(a => $"{a.Kind}:{a.VmName}"));

    [Fact]
    public void Other_media_in_a_running_vms_drive_is_changed_live_when_the_vmm_answers_media_change()
    {
        var limits = new LiveLimits(1, false, 256L << 20) { MediaChange = true };
        var plan = Plan(Current("/srv/iso/old.iso", BootDevice.Dvd, BootDevice.Disk), limits);
        Assert.Equal("UpdateLive:inst", Steps(plan));
        var drift = Assert.Single(plan.Drifts);
        Assert.Equal("DvdDrives", drift.Property);
        Assert.Contains("new.iso", drift.Expected);

        Assert.Equal("UpdateNeedsRestart:inst", Steps(Plan(Current("/srv/iso/old.iso", BootDevice.Dvd, BootDevice.Disk), limits with { MediaChange = false })));
    }

    [Fact]
    public void Another_boot_order_or_display_takes_effect_at_the_next_start()
    {
        var limits = new LiveLimits(1, false, 256L << 20) { MediaChange = true };
        var plan = Plan(Current("/srv/iso/new.iso", BootDevice.Disk), limits);
        Assert.Equal("UpdateNeedsRestart:inst", Steps(plan));
        Assert.Equal("BootOrder", Assert.Single(plan.Drifts).Property);

        var display = Plan(Current("/srv/iso/new.iso", BootDevice.Dvd, BootDevice.Disk) with { Display = null }, limits);
        Assert.Equal(("UpdateNeedsRestart:inst", "Display"), (Steps(display), Assert.Single(display.Drifts).Property));
        Assert.True(Plan(Current("/srv/iso/new.iso", BootDevice.Dvd, BootDevice.Disk), limits).InDesiredState);
    }

    [Fact]
    public void Export_writes_the_keys_and_reads_back_to_the_same_definition()
    {
        var definition = Current("/srv/iso/new.iso", BootDevice.Dvd, BootDevice.Disk, BootDevice.Network) with
        {
            DvdDrives = new ValueList<DvdDriveDefinition>([new DvdDriveDefinition("/srv/iso/new.iso"), DvdDriveDefinition.Empty, new DvdDriveDefinition("pool://isos/x.iso")]),
            Display = new DisplaySettings("unix", "/etc/kvmps/vnc.pw"),
        };
        var text = ManifestExporter.Write([(definition, VmState.Off)]);
        Assert.Contains("BootOrder          = @(\n                'Dvd'\n                'Disk'\n                'Network'\n            )", text);
        Assert.Contains("Display            = @{ Vnc = 'unix'; PasswordFile = '/etc/kvmps/vnc.pw' }", text);
        Assert.Contains("@{ Pool = 'isos'; Volume = 'x.iso' }", text);
        var read = DesiredStateReader.Parse(text, "export.psd1").Vms.Single().Definition!;
        Assert.Equal(definition.DvdDrives, read.DvdDrives);
        Assert.Equal(definition.BootOrder, read.BootOrder);
        Assert.Equal(definition.Display, read.Display);
    }
}
