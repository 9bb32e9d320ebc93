namespace KvmPS.Management.Lifecycle;

/// <summary>Base of lifecycle failures. Always names the VM (<see cref="VmName"/>, and in the message).</summary>
public class VmManagementException : Exception
{
    public VmManagementException(string vmName, string message, Exception? inner = null) : base(message, inner) => VmName = vmName;

    public string VmName { get; }
}

/// <summary>The operation is not possible in the VM's current state, e.g. "VM 'web' is running; use -Force".</summary>
public sealed class VmStateException : VmManagementException
{
    public VmStateException(string vmName, VmState state, string message, Exception? inner = null)
        : base(vmName, message, inner) => State = state;

    public VmState State { get; }
}

/// <summary>
/// A requested value is not allowed for this VM (vCPU count above its maximum, balloon target outside the
/// memory range, renaming through Update, …). <see cref="Property"/> is the schema name (<c>VcpuCount</c>).
/// </summary>
public sealed class ManagementValidationException : VmManagementException
{
    public ManagementValidationException(string vmName, string property, string reason)
        : base(vmName, $"VM '{vmName}': {property}: {reason}")
    {
        Property = property;
        Reason = reason;
    }

    public string Property { get; }
    public string Reason { get; }
}

/// <summary>The definition uses features kvmps-vmm cannot provide yet; nothing was started.</summary>
public sealed class VmFeatureNotSupportedException : VmManagementException
{
    public VmFeatureNotSupportedException(string vmName, IReadOnlyList<string> features)
        : base(vmName, $"VM '{vmName}' cannot be started: kvmps-vmm does not support {string.Join("; ", features)} yet")
        => Features = features;

    /// <summary>One entry per unsupported feature, naming the definition property, e.g. "disks (Disks: 2)".</summary>
    public IReadOnlyList<string> Features { get; }
}

/// <summary>
/// kvmps-vmm could not be started or did not come up: binary missing, exited during start (with its exit
/// status and the tail of its stderr from vmm.log), or did not report Running in time. Nothing is left running.
/// </summary>
public sealed class VmmLaunchException : VmManagementException
{
    public VmmLaunchException(string vmName, string message, int? exitCode = null, int? signal = null, string? logTail = null, Exception? inner = null)
        : base(vmName, message, inner)
    {
        ExitCode = exitCode;
        Signal = signal;
        LogTail = logTail ?? "";
    }

    /// <summary>kvmps-vmm's exit status if it exited (docs/vmm.md, "Exit status").</summary>
    public int? ExitCode { get; }

    /// <summary>The signal that killed kvmps-vmm, if one did.</summary>
    public int? Signal { get; }

    /// <summary>The last lines kvmps-vmm wrote to stdout/stderr during this start (from vmm.log).</summary>
    public string LogTail { get; }
}

/// <summary>The kvmps-vmm executable cannot be found; the message lists where it was looked for.</summary>
public sealed class VmmBinaryNotFoundException : Exception
{
    public VmmBinaryNotFoundException(IReadOnlyList<string> searched)
        : base($"Cannot find the kvmps-vmm executable. Set {Vmm.VmmProcessLauncher.BinaryVariable} to its path, or build it with 'dotnet publish src/kvmps-vmm -c Release -o out/bin'. Looked in: {string.Join(", ", searched)}")
        => Searched = searched;

    public IReadOnlyList<string> Searched { get; }
}
