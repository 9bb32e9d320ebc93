using KvmPS.Management.Definitions;

namespace KvmPS.Management.Tests;

public static class TestDefinitions
{
    public static VmDefinition Minimal(string name) => new()
    {
        Name = name,
        Memory = MemorySettings.Fixed(256L << 20),
    };

    /// <summary>A definition that uses every feature.</summary>
    public static VmDefinition Full(string name = "full-vm") => new()
    {
        Name = name,
        Memory = new MemorySettings(1L << 30, 512L << 20, 4L << 30),
        Vcpus = new VcpuSettings(2, 8),
        Boot = new FirmwareBoot("/usr/share/seabios/bios.bin", 1),
        Disks = new[]
        {
            new DiskDefinition("data.raw", DiskFormat.Raw, 1L << 30),
            new DiskDefinition("root.qcow2", DiskFormat.Qcow2, 10L << 30, false, "/images/base.qcow2"),
            new DiskDefinition("/srv/iso/install.iso", DiskFormat.Raw, null, true),
        },
        NetworkAdapters = new[]
        {
            new NetworkAdapterDefinition("tap0", null, MacAddress.Parse("52:54:00:aa:bb:cc")),
            new NetworkAdapterDefinition(null, "br0", MacAddress.Parse("02:00:00:00:00:01")),
        },
        BalloonEnabled = true,
        PciPassthrough = new[] { PciAddress.Parse("0000:01:00.0") },
        MemoryBacking = new MemoryBackingSettings(HugePagesMode.Thp, true, 0),
        Autostart = true,
        Notes = "line 1\nline \"2\"",
    };
}
