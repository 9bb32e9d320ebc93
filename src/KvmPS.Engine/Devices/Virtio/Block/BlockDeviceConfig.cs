using System.Text.Json;
using KvmPS.Devices.Config;
using KvmPS.Devices.Virtio;
using KvmPS.Storage;
using KvmPS.Vm.Boot;
using KvmPS.Vmm;

namespace KvmPS.Devices.Virtio.Block;

/// <summary>
/// virtio-blk on a raw or qcow2 image: <c>--device block,path=disk.qcow2[,format=auto|raw|qcow2][,read_only=on]
/// [,serial=ID][,discard=off]</c>. The image is opened (and locked, QEMU-compatibly) when the VM is created.
/// </summary>
public sealed record BlockDeviceConfig : DeviceConfig
{
    public override string Type => "block";

    /// <summary>The image file.</summary>
    public required string Path { get; init; }
    public DiskImageFormat Format { get; init; } = DiskImageFormat.Auto;
    public bool ReadOnly { get; init; }
    /// <summary>What GET_ID returns: up to 20 printable ASCII characters ("" for none).</summary>
    public string Serial { get; init; } = "";
    /// <summary>Offer DISCARD and let WRITE_ZEROES unmap (ignored when read-only).</summary>
    public bool Discard { get; init; } = true;

    public static BlockDeviceConfig Parse(DeviceOptions options)
    {
        string path = options.RequiredString("path");
        if (path.Length == 0) throw new DeviceConfigException($"{options.Source}: key 'path': the image path is empty.");
        string formatName = options.String("format", "auto")!;
        var format = formatName switch
        {
            "auto" => DiskImageFormat.Auto,
            "raw" => DiskImageFormat.Raw,
            "qcow2" => DiskImageFormat.Qcow2,
            _ => throw new DeviceConfigException($"{options.Source}: key 'format': '{formatName}' is not auto, raw or qcow2."),
        };
        bool readOnly = options.Bool("read_only", false);
        string serial = options.String("serial", "")!;
        if (serial.Length > VirtioBlock.IdBytes || serial.Any(c => c < 0x20 || c > 0x7e))
            throw new DeviceConfigException($"{options.Source}: key 'serial': '{serial}' must be at most {VirtioBlock.IdBytes} printable ASCII characters.");
        bool discard = options.Bool("discard", true);
        options.EnsureAllUsed();
        return new BlockDeviceConfig { Path = path, Format = format, ReadOnly = readOnly, Serial = serial, Discard = discard };
    }

    /// <summary>
    /// Opens the image. Storage errors (missing, locked by another VM or QEMU, corrupt, backing-chain loop, size not a
    /// multiple of 512) become a <see cref="BootImageException"/> naming the file, so kvmps-vmm exits with BadImage (6);
    /// the storage exception is the inner exception.
    /// </summary>
    public override IVirtioDevice CreateDevice(DeviceContext context)
    {
        IBlockBackend backend;
        try
        {
            // A live upgrade's destination: the running VMM holds the image (and its locks) until it hands it over.
            // Passed files (management's device.add, or kept across a reboot): the image chain is open already.
            backend = context.Files is { Count: > 0 } passed ? DiskImageFactory.OpenPassed(Path, Format, ReadOnly, passed.TakeAll())
                : context.Deferred.HasFlag(HandedOverResources.DiskImages)
                ? new PendingBlockBackend(Path, DiskImageFactory.ReadVirtualSize(Path, Format), ReadOnly)
                : DiskImageFactory.Open(Path, Format, ReadOnly);
        }
        catch (DiskImageException e)
        {
            throw new BootImageException(e.Path, $"block device: {e.Message}", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new BootImageException(Path, $"block device: {IoErrorText.Describe(e)}", e);
        }
        try
        {
            return new VirtioBlock(backend, Serial, Discard);
        }
        catch
        {
            backend.Dispose();
            throw;
        }
    }

    public override void Describe(Utf8JsonWriter w)
    {
        w.WriteString("path", Path);
        w.WriteString("format", Format switch { DiskImageFormat.Raw => "raw", DiskImageFormat.Qcow2 => "qcow2", _ => "auto" });
        w.WriteBoolean("read_only", ReadOnly);
        w.WriteString("serial", Serial);
        w.WriteBoolean("discard", Discard);
    }
}
