using KvmPS.Management.Definitions;

namespace KvmPS.PowerShell;

/// <summary>A VM's CD/DVD drive (Get-KvmDvdDrive, Add-/Set-KvmDvdDrive -PassThru): its index and the ISO in it.</summary>
public sealed class KvmDvdDrive
{
    public required string VMName { get; init; }

    /// <summary>The drive's position among the VM's DVD drives (Hyper-V's ControllerLocation).</summary>
    public required int ControllerLocation { get; init; }

    /// <summary>The ISO as the definition holds it (a pool volume as pool://POOL/VOLUME); null: no medium.</summary>
    public string? Path { get; init; }

    public string? Pool { get; init; }
    public string? Volume { get; init; }

    /// <summary>The ISO's host path (relative and pool paths resolved); null: no medium.</summary>
    public string? FullPath { get; init; }

    public static KvmDvdDrive From(string vmName, int index, DvdDriveDefinition drive, Func<string, string> resolve) => new()
    {
        VMName = vmName,
        ControllerLocation = index,
        Path = drive.Path,
        Pool = drive.Pool,
        Volume = drive.Volume,
        FullPath = drive.Path is null ? null : resolve(drive.Path),
    };

    public override string ToString() => $"{VMName}[{ControllerLocation}]: {Path ?? "(empty)"}";
}

/// <summary>A VM's boot settings (Get-KvmFirmware, Set-KvmFirmware -PassThru).</summary>
public sealed class KvmFirmware
{
    public required string VMName { get; init; }
    public required string Boot { get; init; }

    /// <summary>The order the firmware tries devices in; empty: the boot disk first.</summary>
    public required BootDevice[] BootOrder { get; init; }

    /// <summary>The first entry of the boot order (Hyper-V's FirstBootDevice); null without a boot order.</summary>
    public BootDevice? FirstBootDevice => BootOrder.Length > 0 ? BootOrder[0] : null;

    /// <summary>The device the next start boots from, once.</summary>
    public BootDevice? BootOnce { get; init; }

    public static KvmFirmware From(VmDefinition definition) => new()
    {
        VMName = definition.Name,
        Boot = definition.Boot.ToString() ?? "",
        BootOrder = definition.BootOrder.ToArray(),
        BootOnce = definition.BootOnce,
    };
}
