namespace KvmPS.Management.Store;

public sealed class StoreLockTimeoutException : VmStoreException
{
    public StoreLockTimeoutException(string lockPath, int timeoutMs)
        : base($"Timed out after {timeoutMs} ms waiting for the store lock '{lockPath}' (another kvmps process is modifying the store)")
    {
        LockPath = lockPath;
        TimeoutMs = timeoutMs;
    }

    public string LockPath { get; }
    public int TimeoutMs { get; }
}
