namespace KvmPS.Management.Definitions;

/// <summary>vCPUs present at boot (<see cref="Count"/>) and the hotplug ceiling advertised to the guest (<see cref="Maximum"/>).</summary>
public sealed record VcpuSettings(int Count, int Maximum)
{
    /// <summary>The guest's ACPI MADT / APIC ID space is sized for at most this many vCPUs.</summary>
    public const int Limit = 255;

    public static VcpuSettings Fixed(int count) => new(count, count);

    public override string ToString() => Count == Maximum ? Count.ToString(System.Globalization.CultureInfo.InvariantCulture) : $"{Count} (maximum {Maximum})";
}
