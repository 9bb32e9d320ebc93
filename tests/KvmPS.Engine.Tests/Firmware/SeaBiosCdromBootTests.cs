using System.Diagnostics;
using System.Text;
using System.Text.Json;
using KvmPS.Devices.Virtio.Block;
using KvmPS.Devices.Virtio.Scsi;
using KvmPS.Engine.Tests.Support;
using KvmPS.Vm;
using KvmPS.Vm.Boot;
using Xunit.Abstractions;

namespace KvmPS.Engine.Tests.Firmware;

/// <summary>A SeaBIOS fact that also needs Debian's grub-rescue-pc ISO (a real El Torito image).</summary>
public sealed class GrubIsoFactAttribute : FactAttribute
{
    public const string Iso = "/usr/lib/grub-rescue/grub-rescue-cdrom.iso";
    public GrubIsoFactAttribute()
    {
        if (new SeaBiosFactAttribute().Skip is { } skip) Skip = skip;
        else if (!File.Exists(Iso)) Skip = $"{Iso} is missing (install it with 'apt-get install -y grub-rescue-pc').";
    }
}

/// <summary>
/// SeaBIOS boots GRUB's rescue ISO from the virtio-scsi CD-ROM (El Torito), obeys boot_order, and a running VM's
/// drive ejects and takes a new disc through media.change. GRUB's screen reaches the serial console through SeaBIOS's
/// sercon, which mirrors int 10h.
/// </summary>
[Trait("Category", "CdromBoot")]
public sealed class SeaBiosCdromBootTests(ITestOutputHelper output) : IDisposable
{
    // GRUB runs in kernel mode, emulated on this nested host: on a loaded host its banner took over 90 s.
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(300);
    private const string GrubBanner = "GNU GRUB";
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>A private copy of the ISO (the package's file stays untouched) and a blank, unbootable 8 MiB disk.</summary>
    private (string Iso, string Disk) Images()
    {
        string iso = _dir.File("grub.iso"), disk = _dir.File("blank.img");
        File.Copy(GrubIsoFactAttribute.Iso, iso);
        using (var f = File.Create(disk)) f.SetLength(8 << 20);
        return (iso, disk);
    }

    private sealed class Log
    {
        private readonly StringBuilder _text = new();
        public void Write(ReadOnlySpan<byte> data) { lock (_text) foreach (byte b in data) _text.Append((char)b); }
        public override string ToString() { lock (_text) return _text.ToString(); }
    }

    private static bool WaitFor(Func<bool> condition, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline) { if (condition()) return true; Thread.Sleep(50); }
        return condition();
    }

    [GrubIsoFact]
    public void GrubBootsFromTheCdromWithNoDisk()
    {
        var (iso, _) = Images();
        var debug = new Log();
        var config = new MachineConfig { FirmwarePath = FirmwareImage.SeaBiosAlias, DebugConOutput = debug.Write, Devices = [new CdromDeviceConfig { Path = iso }] };
        var clock = Stopwatch.StartNew();
        using var run = new GuestRun(config);
        run.Machine.Start();
        bool grub = run.WaitForOutput(GrubBanner, Timeout);
        output.WriteLine($"GRUB after {clock.ElapsedMilliseconds} ms\n--- debugcon ---\n{debug}");
        Assert.True(grub, $"no GRUB on the serial console; serial:\n{run.Output}");
        Assert.Contains("found virtio-scsi at 00:01.0", debug.ToString());
        Assert.Contains("type=5 removable=1", debug.ToString()); // INQUIRY: a removable CD-ROM
        Assert.Contains("Booting from DVD/CD", debug.ToString());
        run.Machine.Stop("test done");
    }

    [GrubIsoFact]
    public void BootOrderPicksTheCdOrTheDisk()
    {
        var (iso, disk) = Images();
        // Slot 1: a blank disk; slot 2: the ISO. The CD first: GRUB.
        var debug = new Log();
        var config = new MachineConfig
        {
            FirmwarePath = FirmwareImage.SeaBiosAlias,
            DebugConOutput = debug.Write,
            Devices = [new BlockDeviceConfig { Path = disk }, new CdromDeviceConfig { Path = iso }],
            BootOrder = [2, 1],
        };
        using (var run = new GuestRun(config))
        {
            run.Machine.Start();
            Assert.True(run.WaitForOutput(GrubBanner, Timeout), $"boot order CD, disk: no GRUB; debugcon:\n{debug}");
            Assert.Contains("1: /pci@i0cf8/*@2/*@0/*@0,0", debug.ToString()); // SeaBIOS read our bootorder
            Assert.DoesNotContain("Booting from Hard Disk", debug.ToString());
            run.Machine.Stop("test done");
        }
        // Only the disk: SeaBIOS tries it, fails, and never tries the CD (HALT ends the list).
        debug = new Log();
        using (var run = new GuestRun(config with { DebugConOutput = debug.Write, BootOrder = [1] }))
        {
            run.Machine.Start();
            Assert.True(WaitFor(() => debug.ToString().Contains("No bootable device"), Timeout), $"boot order disk: SeaBIOS did not give up; debugcon:\n{debug}");
            string log = debug.ToString();
            output.WriteLine(log);
            Assert.Contains("Booting from Hard Disk", log);
            Assert.DoesNotContain("Booting from DVD/CD", log);
            Assert.DoesNotContain(GrubBanner, run.Output);
            run.Machine.Stop("test done");
        }
    }

    [GrubIsoFact]
    public void ASnapshotOfGrubKeepsTheChangedDisc()
    {
        var (iso, _) = Images();
        string other = _dir.File("other.iso");
        File.Copy(iso, other);
        var debug = new Log();
        var serial = new Log();
        var config = new MachineConfig { FirmwarePath = FirmwareImage.SeaBiosAlias, DebugConOutput = debug.Write, Devices = [new CdromDeviceConfig { Path = iso }] };
        string snapshot = _dir.File("snap");
        using (var first = new MachineBuilder(config, serial.Write).Boot())
        {
            first.Start();
            Assert.True(WaitFor(() => serial.ToString().Contains("executed automatically"), Timeout), $"no GRUB menu:\n{serial}");
            // The host swaps the disc (same content, another file) while GRUB runs, then snapshots.
            var drive = first.Devices.OfType<VirtioScsi>().Single();
            Assert.Equal(other, drive.ChangeMedia(new KvmPS.Contract.MediaChangeRequest { Pci = "00:01.0", Path = other }, "00:01.0").Path);
            Assert.True(first.Pause(TimeSpan.FromSeconds(5)));
            KvmPS.State.SnapshotDirectory.Write(snapshot, KvmPS.State.SnapshotStateFile.Encode(first.SaveState()), "{}", first.Memory);
        }
        // Restored into a machine built from the configuration (the first ISO): the drive holds the snapshot's disc,
        // its unit attention still pending, and GRUB runs on (its menu countdown goes on).
        var after = new Log();
        var fresh = config with { Devices = [new CdromDeviceConfig { Path = iso }] }; // as a new process reads config.json
        using var restored = new MachineBuilder(fresh, after.Write).Restore(KvmPS.State.SnapshotDirectory.Open(snapshot), RestoreMemoryMode.Private);
        var restoredDrive = restored.Devices.OfType<VirtioScsi>().Single();
        Assert.Equal(other, restoredDrive.StateReply("00:01.0").Path);
        Assert.Equal(Scsi.AscMediumChanged, restoredDrive.Lun.PendingUnitAttention);
        restored.Start();
        Assert.True(WaitFor(() => after.ToString().Contains("executed automatically"), Timeout), $"GRUB did not go on after the restore:\n{after}");
        restored.Stop("test done");
    }

    [GrubIsoFact]
    public void MediaChangeEjectsAndInsertsOnARunningVm()
    {
        var (iso, disk) = Images();
        string other = Path.Combine(_dir.Path, "other.iso");
        File.Copy(iso, other);
        string sock = _dir.File("c.sock");
        using var vmm = new VmmProcess("--firmware", "seabios", "--memory", "128M", "--device", "block,path=" + disk, "--device", "cdrom,path=" + iso,
            "--boot-order", "00:02.0", "--serial", "stdio", "--control-socket", sock);
        Assert.True(vmm.WaitForStdout(GrubBanner, Timeout), $"no GRUB:\n{vmm.Stdout}\n{vmm.Stderr}");
        using var client = new ControlClient(sock);
        JsonElement Drive() => client.Ok("describe").GetProperty("devices").EnumerateArray().Single(d => d.GetProperty("type").GetString() == "cdrom");
        Assert.Equal("00:02.0", Drive().GetProperty("pci").GetString());
        Assert.Equal(iso, Drive().GetProperty("path").GetString());
        Assert.Contains("media.change", client.Ok("describe").GetProperty("requests").EnumerateArray().Select(r => r.GetString()));

        // Eject: the reply and describe show an empty drive.
        var ejected = client.Ok("media.change", "\"pci\": \"00:02.0\"");
        Assert.Equal(JsonValueKind.Null, ejected.TryGetProperty("path", out var p) ? p.ValueKind : JsonValueKind.Null);
        Assert.False(Drive().TryGetProperty("path", out _));

        // Insert another disc.
        var inserted = client.Ok("media.change", $"\"pci\": \"00:02.0\", \"path\": \"{other}\"");
        Assert.Equal(other, inserted.GetProperty("path").GetString());
        Assert.Equal(new FileInfo(other).Length, inserted.GetProperty("size_bytes").GetInt64());
        Assert.Equal(other, Drive().GetProperty("path").GetString());

        // Not an ISO: refused naming the file; the disc stays. The disk's address is no drive.
        var refused = client.Request("media.change", $"\"pci\": \"00:02.0\", \"path\": \"{disk}\"");
        Assert.False(refused.GetProperty("ok").GetBoolean());
        Assert.Equal("InvalidArgument", refused.GetProperty("error").GetProperty("code").GetString());
        Assert.Contains(disk, refused.GetProperty("error").GetProperty("message").GetString());
        Assert.Equal(other, Drive().GetProperty("path").GetString());
        var notDrive = client.Request("media.change", "\"pci\": \"00:01.0\"");
        Assert.Equal("InvalidArgument", notDrive.GetProperty("error").GetProperty("code").GetString());
        Assert.Equal("Running", client.Ok("status").GetProperty("state").GetString());
        client.Ok("stop", "\"graceful\": false");
        vmm.WaitForExit(TimeSpan.FromSeconds(20));
    }
}
