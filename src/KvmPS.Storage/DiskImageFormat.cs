namespace KvmPS.Storage;

/// <summary>On-disk image format.</summary>
public enum DiskImageFormat
{
    /// <summary>Probe the file: qcow2 if it starts with the qcow2 magic, raw otherwise.</summary>
    Auto,
    Raw,
    Qcow2,
}
