using System.Management.Automation;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Remote;

namespace KvmPS.PowerShell;

/// <summary>
/// A VM on another host, as Get-KvmVm -HostName (and Start-/Stop-KvmVm -PassThru -HostName) return it: what that
/// host's kvmps reported, and which host it is on. Piped into Start-/Stop-KvmVm it selects the VM by Name on the
/// same HostName (with the same UserName and KeyFilePath).
/// </summary>
public sealed class KvmRemoteVm
{
    public KvmRemoteVm(RemoteVmInfo info, string? userName, string? keyFilePath)
    {
        Info = info ?? throw new ArgumentNullException(nameof(info));
        UserName = userName;
        KeyFilePath = keyFilePath;
    }

    [Hidden]
    public RemoteVmInfo Info { get; }

    /// <summary>The host the VM is on, as it was named (without the user).</summary>
    public string HostName => Info.HostName.Contains('@') ? Info.HostName[(Info.HostName.IndexOf('@') + 1)..] : Info.HostName;

    /// <summary>PowerShell's usual name for the same thing (Get-Process -ComputerName, CIM).</summary>
    public string ComputerName => HostName;

    /// <summary>The SSH user the VM was read with; null for ssh's default.</summary>
    public string? UserName { get; }

    /// <summary>The private key it was read with; null for ssh's default keys.</summary>
    [Hidden]
    public string? KeyFilePath { get; }

    public string Name => Info.Name;
    public VmState State => Info.State;
    public string? StateReason => Info.StateReason;
    public int ProcessorCount => Info.LiveVcpus ?? Info.VcpuCount;
    public int MaximumProcessorCount => Info.VcpuMaximum;
    public long MemoryStartupBytes => Info.MemoryStartupBytes;
    public long MemoryMinimumBytes => Info.MemoryMinimumBytes;
    public long MemoryMaximumBytes => Info.MemoryMaximumBytes;
    public long? MemoryAssignedBytes => Info.LiveMemoryBytes;
    public long MemoryMB => (MemoryAssignedBytes ?? MemoryStartupBytes) / (1024 * 1024);
    public TimeSpan Uptime => Info.Uptime ?? TimeSpan.Zero;
    public int? ProcessId => Info.Pid;
    public bool IsActive => Info.State is not VmState.Off;
    public bool Autostart => Info.Autostart;
    public string Boot => Info.Boot;
    public string Notes => Info.Notes;

    /// <summary>The VM's folder in the remote host's store (a path on that host).</summary>
    public string Path => Info.Directory;

    public string SerialLogPath => Info.SerialLogPath;

    public override string ToString() => $"{HostName}:{Name}";
}
