namespace KvmPS.Management.Definitions;

// The on-disk JSON shape of a VM definition (vm.json). Field names are the schema keys in camelCase and
// carry their units; they are a stable file format, so rename nothing here without a migration.

internal sealed class VmDefinitionDocument
{
    public string? Name { get; set; }
    public long? MemoryStartupBytes { get; set; }
    public long? MemoryMinimumBytes { get; set; }
    public long? MemoryMaximumBytes { get; set; }
    public int? VcpuCount { get; set; }
    public int? VcpuMaximum { get; set; }
    public BootDocument? Boot { get; set; }
    public List<DiskDocument>? Disks { get; set; }
    public List<NetworkAdapterDocument>? NetworkAdapters { get; set; }
    public bool? BalloonEnabled { get; set; }
    public List<string>? PciPassthrough { get; set; }
    public string? HugePages { get; set; }
    public bool? KsmEnabled { get; set; }
    public int? NumaNode { get; set; }
    public bool? Autostart { get; set; }
    public string? Notes { get; set; }
    public long? LogMaxBytes { get; set; }
    public int? LogFileCount { get; set; }
    public List<DvdDriveDocument>? DvdDrives { get; set; }
    public List<string>? BootOrder { get; set; }
    public string? BootOnce { get; set; }
    public DisplayDocument? Display { get; set; }
    public List<string>? VfioUserDevices { get; set; }
    public int? CpuRelativeWeight { get; set; }
    public int? CpuMaximumPercent { get; set; }
    public long? VmmOverheadLimitBytes { get; set; }
}

internal sealed class DvdDriveDocument
{
    public string? Path { get; set; }
    public string? Pool { get; set; }
    public string? Volume { get; set; }
}

internal sealed class DisplayDocument
{
    public string? Vnc { get; set; }
    public string? PasswordFile { get; set; }
}

internal sealed class BootDocument
{
    public string? KernelPath { get; set; }
    public string? InitrdPath { get; set; }
    public string? Cmdline { get; set; }
    public string? FirmwarePath { get; set; }
    public int? BootDiskIndex { get; set; }
}

internal sealed class DiskDocument
{
    public string? Path { get; set; }
    public string? Format { get; set; }
    public long? SizeBytes { get; set; }
    public bool? ReadOnly { get; set; }
    public string? BackingImagePath { get; set; }
    public string? Pool { get; set; }
    public string? Volume { get; set; }
}

internal sealed class NetworkAdapterDocument
{
    public string? Tap { get; set; }
    public string? Bridge { get; set; }
    public string? Network { get; set; }
    public string? MacAddress { get; set; }
    public string? SriovVf { get; set; }
    public int? VlanId { get; set; }
}
