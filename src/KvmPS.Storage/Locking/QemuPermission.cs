namespace KvmPS.Storage.Locking;

/// <summary>
/// QEMU block-layer permission bits (BLK_PERM_*). The bit index selects the lock byte:
/// RAW_LOCK_PERM_BASE + index means "I hold this permission", RAW_LOCK_SHARED_BASE + index
/// means "I do not let others hold it".
/// </summary>
[Flags]
internal enum QemuPermission : ulong
{
    None = 0,
    ConsistentRead = 0x01, // BLK_PERM_CONSISTENT_READ
    Write = 0x02,          // BLK_PERM_WRITE
    WriteUnchanged = 0x04, // BLK_PERM_WRITE_UNCHANGED
    Resize = 0x08,         // BLK_PERM_RESIZE
    All = 0x0f,            // BLK_PERM_ALL (QEMU >= 7.0; older builds also had GRAPH_MOD = 0x10)
}
