using KvmPS.Management.Definitions;
using KvmPS.Management.Manifests;

namespace KvmPS.Management.DesiredState;

/// <summary>
/// One SR-IOV physical function's VF count as a manifest declares it for its host:
/// <c>HostSriov = @{ '0000:03:00.0' = 4 }</c> (<c>sriov_numvfs</c>; 0 disables the VFs).
/// </summary>
public sealed record DesiredSriovVfCount(PciAddress PhysicalFunction, int VfCount)
{
    public SourcePosition Position { get; init; }
}

/// <summary>
/// Reads a manifest's top-level <c>HostSriov = @{ 'DDDD:BB:DD.F' = N; ... }</c>. A manifest is for one host (this one,
/// or the one its <c>HostName</c> names, where <c>kvmps apply</c> runs it), so the counts are that host's. Every
/// problem names file:line:column and the key (<c>HostSriov['0000:03:00.0']</c>); a PF may be declared once across
/// all files. Whether the PF exists and supports that many VFs is the plan's check (it needs the host).
/// </summary>
internal static class DesiredSriovReader
{
    public const string Key = "HostSriov";

    /// <summary>sriov_totalvfs is a u16 in the kernel; anything above it is a typo, refused before the host is read.</summary>
    private const int MaximumVfCount = ushort.MaxValue;

    public static void Read(PsdHashtable root, List<DesiredSriovVfCount> counts)
    {
        if (!root.TryGetEntry(Key, out var entry) || entry.Value is PsdNull)
            return;
        if (entry.Value is not PsdHashtable table)
            throw new DesiredStateException(entry.Value.Position, null, Key,
                $"must be a hashtable of physical functions and VF counts (@{{ '0000:03:00.0' = 4 }}), not {DesiredStateReader.Describe(entry.Value)}");
        foreach (var pf in table.Entries)
        {
            var where = $"{Key}['{pf.Key}']";
            PciAddress address;
            try
            {
                address = PciAddress.Parse(pf.Key);
            }
            catch (ValueFormatException e)
            {
                throw new DesiredStateException(pf.KeyPosition, null, where, e.Message, e);
            }
            if (pf.Value is not PsdNumber number || !number.TryGetInt64(out var count) || count < 0 || count > MaximumVfCount)
                throw new DesiredStateException(pf.Value.Position, null, where,
                    $"must be a VF count, a whole number from 0 to {MaximumVfCount}, not {DesiredStateReader.Describe(pf.Value)}");
            // Within one file the parser refuses a repeated key; this catches the same PF in a second file.
            if (counts.FirstOrDefault(c => c.PhysicalFunction == address) is { } first)
                throw new DesiredStateException(pf.KeyPosition, null, where, $"physical function {address} is declared twice (first at {first.Position})");
            counts.Add(new DesiredSriovVfCount(address, (int)count) { Position = pf.KeyPosition });
        }
    }
}
