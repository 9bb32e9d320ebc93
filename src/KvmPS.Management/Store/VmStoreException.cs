namespace KvmPS.Management.Store;

/// <summary>Base of every store failure.</summary>
public class VmStoreException : Exception
{
    public VmStoreException(string message, Exception? inner = null) : base(message, inner) { }
}
