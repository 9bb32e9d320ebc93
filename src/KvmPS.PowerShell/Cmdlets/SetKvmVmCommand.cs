using System.Management.Automation;
using KvmPS.Management.Definitions;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Set-KvmVm: changes stored settings; a running VM gets them at its next restart (or now with -RestartIfNeeded).</summary>
[Cmdlet(VerbsCommon.Set, "KvmVm", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmVm))]
public sealed class SetKvmVmCommand : KvmRemoteVmCmdletBase
{
    [Parameter]
    [ValidateRange(1, VcpuSettings.Limit)]
    public int? ProcessorCount { get; set; }

    [Parameter]
    [ValidateRange(1, VcpuSettings.Limit)]
    public int? MaximumProcessorCount { get; set; }

    [Parameter]
    [ValidateRange(4096, long.MaxValue)]
    public long? MemoryStartupBytes { get; set; }

    [Parameter]
    [ValidateRange(4096, long.MaxValue)]
    public long? MemoryMinimumBytes { get; set; }

    [Parameter]
    [ValidateRange(4096, long.MaxValue)]
    public long? MemoryMaximumBytes { get; set; }

    [Parameter]
    public bool? BalloonEnabled { get; set; }

    [Parameter]
    public bool? Autostart { get; set; }

    [Parameter]
    public string? Notes { get; set; }

    /// <summary>serial.log and vmm.log rotate at this size (0: never; at least 4096 otherwise). Takes effect at the VMM's next start.</summary>
    [Parameter]
    [ValidateRange(0, long.MaxValue)]
    public long? LogMaxBytes { get; set; }

    /// <summary>Rotated log files kept beside serial.log and vmm.log (0 to 100).</summary>
    [Parameter]
    [ValidateRange(0, 100)]
    public int? LogFileCount { get; set; }

    /// <summary>Boot this kernel directly; an empty string returns to the built-in guest.</summary>
    [Parameter]
    [AllowEmptyString]
    public string? KernelPath { get; set; }

    [Parameter]
    public string? InitrdPath { get; set; }

    [Parameter]
    public string? KernelArguments { get; set; }

    [Parameter]
    public SwitchParameter RestartIfNeeded { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    /// <summary>This invocation's parameters as a settings change (paths resolved against the current location).</summary>
    private VmSettingsChange Change() => new()
    {
        ProcessorCount = ProcessorCount,
        MaximumProcessorCount = MaximumProcessorCount,
        MemoryStartupBytes = MemoryStartupBytes,
        MemoryMinimumBytes = MemoryMinimumBytes,
        MemoryMaximumBytes = MemoryMaximumBytes,
        BalloonEnabled = BalloonEnabled,
        Autostart = Autostart,
        Notes = Notes,
        LogMaxBytes = LogMaxBytes,
        LogFileCount = LogFileCount,
        KernelPath = string.IsNullOrEmpty(KernelPath) ? KernelPath : ResolvePath(KernelPath),
        InitrdPath = string.IsNullOrEmpty(InitrdPath) ? InitrdPath : ResolvePath(InitrdPath),
        KernelArguments = KernelArguments,
    };

    protected override void ProcessVm(string name)
    {
        if (!Output.ShouldProcess(name, "Change VM settings"))
            return;
        var result = Manager.ChangeSettings(name, Change());
        ReportChange(result, RestartIfNeeded.IsPresent);
        if (PassThru.IsPresent)
            Output.WriteObject(new KvmVm(Manager.Get(name)));
    }

    /// <summary>-HostName: kvmps vm set there; paths are that host's, as given.</summary>
    internal override void ProcessRemoteVm(RemoteHost remote, string name)
    {
        var options = new List<string>();
        void Add(string option, string? value)
        {
            if (value is not null)
                options.AddRange([option, value]);
        }
        static string? OnOff(bool? value) => value is { } v ? (v ? "on" : "off") : null;
        Add("--vcpus", ProcessorCount is { } vcpus ? Number(vcpus) : null);
        Add("--max-vcpus", MaximumProcessorCount is { } maxVcpus ? Number(maxVcpus) : null);
        Add("--memory", MemoryStartupBytes is { } memory ? Bytes(memory) : null);
        Add("--min-memory", MemoryMinimumBytes is { } min ? Bytes(min) : null);
        Add("--max-memory", MemoryMaximumBytes is { } max ? Bytes(max) : null);
        Add("--balloon", OnOff(BalloonEnabled));
        Add("--autostart", OnOff(Autostart));
        Add("--notes", Notes);
        Add("--log-max", LogMaxBytes is { } logMax ? (logMax == 0 ? "0" : Bytes(logMax)) : null);
        Add("--log-files", LogFileCount is { } files ? Number(files) : null);
        Add("--kernel", KernelPath);
        Add("--initrd", InitrdPath);
        Add("--cmdline", KernelArguments);
        RemoteChange(remote, name, "Change VM settings", "set", options, [], PassThru.IsPresent, RestartIfNeeded.IsPresent);
    }
}
