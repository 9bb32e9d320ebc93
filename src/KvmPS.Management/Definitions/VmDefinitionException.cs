namespace KvmPS.Management.Definitions;

/// <summary>A VM definition is invalid. Names the VM and the offending property (schema path such as <c>Disks[1].Format</c>).</summary>
public sealed class VmDefinitionException : Exception
{
    public VmDefinitionException(string vmName, string property, string reason, Exception? inner = null)
        : base($"VM '{KvmPS.Management.Definitions.VmName.ForDisplay(vmName)}': {property}: {reason}", inner)
    {
        VmName = vmName;
        Property = property;
        Reason = reason;
    }

    public string VmName { get; }

    /// <summary>Schema path of the property, e.g. <c>MemoryStartupBytes</c> or <c>NetworkAdapters[0].MacAddress</c>.</summary>
    public string Property { get; }

    public string Reason { get; }
}
