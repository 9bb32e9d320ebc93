using System.Text;

namespace KvmPS.Management.HostDevices;

/// <summary>
/// The writes that change the host's PCI state (driver_override, unbind, drivers_probe, sriov_numvfs). An interface so
/// tests can run against a fake sysfs tree whose double emulates what the kernel does on each write.
/// </summary>
public interface ISysfsWriter
{
    /// <summary>Writes <paramref name="value"/> to the attribute at <paramref name="path"/>; the kernel's refusal is an <see cref="IOException"/>.</summary>
    void Write(string path, string value);
}

/// <summary>Writes sysfs attributes the way the kernel wants them: one write(2) of the whole value, no truncation.</summary>
public sealed class SysfsWriter : ISysfsWriter
{
    public static readonly SysfsWriter Instance = new();

    public void Write(string path, string value)
    {
        // FileMode.Open: a sysfs attribute is never created; bufferSize 0: one write, so the kernel sees the value whole.
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite, bufferSize: 0);
        stream.Write(Encoding.ASCII.GetBytes(value));
    }
}
