namespace KvmPS.Management.Definitions;

public enum DiskFormat
{
    Raw,
    Qcow2,
}
