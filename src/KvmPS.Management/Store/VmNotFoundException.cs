namespace KvmPS.Management.Store;

public sealed class VmNotFoundException : VmStoreException
{
    public VmNotFoundException(string vmName, string storeRoot)
        : base($"VM '{vmName}' does not exist in the store at '{storeRoot}'") => VmName = vmName;

    public string VmName { get; }
}
