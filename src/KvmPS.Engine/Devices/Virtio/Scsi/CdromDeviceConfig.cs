using System.Text.Json;
using KvmPS.Devices.Config;

namespace KvmPS.Devices.Virtio.Scsi;

/// <summary>
/// The medium a drive holds now, shared by every boot of the VM: <c>media.change</c> updates it, so a guest reboot
/// (which re-creates the devices from the configuration) finds the disc the drive had, and <c>describe</c> shows it.
/// </summary>
public sealed class CdromMedium
{
    private readonly object _lock = new();
    private string? _path;
    private bool _changed;
    public CdromMedium(string? path) => _path = path;
    public string? Path { get { lock (_lock) return _path; } }
    /// <summary>The medium differs from the configured one (a change, not the configuration, put it there).</summary>
    public bool Changed { get { lock (_lock) return _changed; } }
    /// <summary>Called by the device after each change (control thread) and restore.</summary>
    public void Set(string? path) { lock (_lock) { _path = path; _changed = true; } }
}

/// <summary>
/// A CD/DVD drive: <c>--device cdrom[,path=ISO]</c>, a virtio-scsi controller with one CD-ROM LUN (target 0, LUN 0)
/// on a read-only ISO 9660 image; no path: an empty drive (media.change inserts one later).
/// </summary>
public sealed record CdromDeviceConfig : DeviceConfig
{
    public const string TypeName = "cdrom";
    public override string Type => TypeName;
    /// <summary>The configured image, or null for an empty drive.</summary>
    public string? Path { get; init; }
    /// <summary>The current medium (starts as <see cref="Path"/>).</summary>
    public CdromMedium Medium { get => _medium ??= new CdromMedium(Path); init => _medium = value; }
    private CdromMedium? _medium;

    public static CdromDeviceConfig Parse(DeviceOptions options)
    {
        string? path = options.String("path");
        options.EnsureAllUsed();
        if (path is { Length: 0 }) throw new DeviceConfigException($"{options.Source}: key 'path': the ISO path is empty (leave 'path' out for an empty drive).");
        return new CdromDeviceConfig { Path = path };
    }

    /// <summary>
    /// Opens the current medium. A configured ISO that is missing, a directory, unreadable or not ISO 9660 is a
    /// <see cref="DeviceConfigException"/> naming the key and the file. A medium put in by media.change that has gone
    /// by a reboot leaves the drive empty, with a log line: the guest asked for the reboot, not for a broken VM.
    /// </summary>
    public override IVirtioDevice CreateDevice(DeviceContext context)
    {
        string? path = Medium.Path;
        IsoImage? image = null;
        if (path is not null)
        {
            // A reboot's drive takes the previous boot's open medium (VmmHost.KeptFiles): a passed ISO has no path here to open.
            try { image = context.Files is { Count: > 0 } kept ? IsoImage.OpenPassed(path, kept.TakeAll()[0]) : IsoImage.Open(path); }
            catch (IsoImageException e) when (Medium.Changed)
            {
                context.Log($"virtio-scsi: the drive is empty after the reboot: {e.Message}");
                Medium.Set(null);
            }
            catch (IsoImageException e) { throw new DeviceConfigException($"cdrom device: key 'path': {e.Message}"); }
        }
        return new VirtioScsi(image, context.Log) { MediumChanged = Medium.Set };
    }

    /// <summary>"path": the medium in the drive now (absent: empty).</summary>
    public override void Describe(Utf8JsonWriter w)
    {
        if (Medium.Path is { } path) w.WriteString("path", path);
    }
}
