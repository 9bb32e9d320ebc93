namespace KvmPS.Management.Store;

public sealed class VmAlreadyExistsException : VmStoreException
{
    public VmAlreadyExistsException(string vmName, string vmDirectory)
        : base($"VM '{vmName}' already exists at '{vmDirectory}'") => VmName = vmName;

    public string VmName { get; }
}
