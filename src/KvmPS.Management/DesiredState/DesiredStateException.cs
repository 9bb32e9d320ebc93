using KvmPS.Management.Definitions;
using KvmPS.Management.Manifests;

namespace KvmPS.Management.DesiredState;

/// <summary>
/// A manifest cannot be used: it is missing, is not valid data-file syntax, or breaks the desired-state schema.
/// <see cref="Exception.Message"/> is <c>file:line:column: VM 'name': Key: reason</c> (the VM and key parts when
/// they apply), so editors and CI logs can jump to the offending text. Nothing has been changed when it is thrown.
/// </summary>
public sealed class DesiredStateException : Exception
{
    public DesiredStateException(SourcePosition position, string? vmName, string? property, string reason, Exception? inner = null)
        : base(Format(position, vmName, property, reason), inner)
    {
        Position = position;
        VmName = vmName;
        Property = property;
        Reason = reason;
    }

    /// <summary>Where the problem is. Line and column are 0 when the file itself is the problem (e.g. it does not exist).</summary>
    public SourcePosition Position { get; }

    public string File => Position.File;
    public int Line => Position.Line;
    public int Column => Position.Column;

    /// <summary>The VM the problem is in, when it is inside a VM entry.</summary>
    public string? VmName { get; }

    /// <summary>The schema path, e.g. <c>VcpuCount</c>, <c>Disks[1].Format</c> or <c>VirtualMachines[2]</c>.</summary>
    public string? Property { get; }

    /// <summary>The message without location, VM and key.</summary>
    public string Reason { get; }

    private static string Format(SourcePosition position, string? vmName, string? property, string reason)
    {
        var location = position.Line > 0 ? position.ToString() : position.File;
        var vm = string.IsNullOrEmpty(vmName) ? "" : $"VM '{KvmPS.Management.Definitions.VmName.ForDisplay(vmName)}': ";
        var key = string.IsNullOrEmpty(property) ? "" : $"{property}: ";
        return $"{location}: {vm}{key}{reason}";
    }
}
