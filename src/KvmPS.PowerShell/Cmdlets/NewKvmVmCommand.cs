using System.Collections;
using System.Management.Automation;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Completers;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>New-KvmVm: stores a new VM (and creates its disk images); it is not started.</summary>
// Definition is the default set on purpose: with Parameters as the default, pwsh's binder never tries the
// by-value -Definition for a piped hashtable ("cannot be bound"). A name, or any settings parameter, still selects Parameters.
[Cmdlet(VerbsCommon.New, "KvmVm", DefaultParameterSetName = DefinitionSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmVm), typeof(KvmRemoteVm), typeof(KvmJob))]
public sealed class NewKvmVmCommand : KvmRemoteCmdletBase
{
    internal const string ParametersSet = "Parameters";
    internal const string DefinitionSet = "Definition";

    [Parameter(ParameterSetName = ParametersSet, Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(VmNameCompleter))]
    [Alias("VMName")]
    public string? Name { get; set; }

    /// <summary>A definition as a hashtable with the manifest schema keys (e.g. from Import-PowerShellDataFile).</summary>
    [Parameter(ParameterSetName = DefinitionSet, Mandatory = true, Position = 0, ValueFromPipeline = true)]
    [ValidateNotNull]
    public IDictionary? Definition { get; set; }

    [Parameter(ParameterSetName = ParametersSet)]
    [ValidateRange(4096, long.MaxValue)]
    public long MemoryStartupBytes { get; set; } = VmSettingsChange.DefaultMemoryBytes;

    [Parameter(ParameterSetName = ParametersSet)]
    [ValidateRange(4096, long.MaxValue)]
    public long? MemoryMinimumBytes { get; set; }

    [Parameter(ParameterSetName = ParametersSet)]
    [ValidateRange(4096, long.MaxValue)]
    public long? MemoryMaximumBytes { get; set; }

    [Parameter(ParameterSetName = ParametersSet)]
    [ValidateRange(1, VcpuSettings.Limit)]
    public int ProcessorCount { get; set; } = VmSettingsChange.DefaultProcessorCount;

    [Parameter(ParameterSetName = ParametersSet)]
    [ValidateRange(1, VcpuSettings.Limit)]
    public int? MaximumProcessorCount { get; set; }

    [Parameter(ParameterSetName = ParametersSet)]
    [ValidateNotNullOrEmpty]
    public string? KernelPath { get; set; }

    [Parameter(ParameterSetName = ParametersSet)]
    [ValidateNotNullOrEmpty]
    public string? InitrdPath { get; set; }

    [Parameter(ParameterSetName = ParametersSet)]
    public string? KernelArguments { get; set; }

    [Parameter(ParameterSetName = ParametersSet)]
    public SwitchParameter BalloonEnabled { get; set; }

    [Parameter(ParameterSetName = ParametersSet)]
    public SwitchParameter Autostart { get; set; }

    [Parameter(ParameterSetName = ParametersSet)]
    public string? Notes { get; set; }

    /// <summary>serial.log and vmm.log rotate at this size (0: never; at least 4096 otherwise). Takes effect at the VMM's next start.</summary>
    [Parameter(ParameterSetName = ParametersSet)]
    [ValidateRange(0, long.MaxValue)]
    public long? LogMaxBytes { get; set; }

    /// <summary>Rotated log files kept beside serial.log and vmm.log (0 to 100).</summary>
    [Parameter(ParameterSetName = ParametersSet)]
    [ValidateRange(0, 100)]
    public int? LogFileCount { get; set; }

    /// <summary>Install from this ISO (virt-install --cdrom): a DVD drive with it, SeaBIOS booting Dvd then Disk, and a display with VNC.</summary>
    [Parameter(ParameterSetName = ParametersSet)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(KvmPS.PowerShell.Completers.IsoPathCompleter))]
    public string? DvdPath { get; set; }

    /// <summary>With -DvdPath: where VNC listens besides the VM's Unix socket ('unix', the default, or ADDR:PORT such as 127.0.0.1:5901).</summary>
    [Parameter(ParameterSetName = ParametersSet)]
    [ValidateNotNullOrEmpty]
    public string? Vnc { get; set; }

    [Parameter]
    public SwitchParameter AsJob { get; set; }

    /// <summary>
    /// The definition this invocation describes, its paths through <paramref name="path"/>: resolved against the current
    /// location here, as given for -HostName (they are that host's paths).
    /// </summary>
    private VmDefinition BuildDefinition(Func<string, string> path)
    {
        if (Definition is not null)
            return VmDefinitionReader.FromDictionary(Unwrap(Definition));
        if (Vnc is not null && DvdPath is null)
            throw KvmParameterException.Combination("Vnc", Vnc, "-Vnc goes with -DvdPath (the display of an ISO install); for other VMs set Display in the definition");
        if (DvdPath is not null && KernelPath is not null)
            throw KvmParameterException.Combination("DvdPath", DvdPath, "-DvdPath boots the ISO through firmware; it cannot be combined with -KernelPath");
        var definition = new VmSettingsChange
        {
            ProcessorCount = ProcessorCount,
            MaximumProcessorCount = MaximumProcessorCount,
            MemoryStartupBytes = MemoryStartupBytes,
            MemoryMinimumBytes = MemoryMinimumBytes,
            MemoryMaximumBytes = MemoryMaximumBytes,
            BalloonEnabled = BalloonEnabled.IsPresent,
            Autostart = Autostart.IsPresent,
            Notes = Notes,
            LogMaxBytes = LogMaxBytes,
            LogFileCount = LogFileCount,
            KernelPath = KernelPath is null ? null : path(KernelPath),
            InitrdPath = InitrdPath is null ? null : path(InitrdPath),
            KernelArguments = KernelArguments,
        }.ToNewDefinition(Name!);
        return DvdPath is null ? definition : IsoInstall.Apply(definition, path(DvdPath), Vnc);
    }

    protected override void ProcessLocal()
    {
        var definition = BuildDefinition(ResolvePath);
        if (!Output.ShouldProcess(DisplayText.Vm(definition), "Create VM"))
            return;
        var manager = Manager;
        KvmJobs.RunOrQueue(this, AsJob.IsPresent, "New-KvmVm", definition.Name, output =>
        {
            var progress = output.Progress();
            output.WriteObject(new KvmVm(manager.New(definition, progress)));
        });
    }

    /// <summary>
    /// -HostName: the definition, checked here as locally, goes to kvmps vm new there in vm.json's format (on stdin);
    /// the VM comes back as a <see cref="KvmRemoteVm"/>.
    /// </summary>
    internal override void ProcessRemote(RemoteHost remote)
    {
        var definition = BuildDefinition(p => p);
        if (!Output.ShouldProcess($"{DisplayText.Vm(definition)} on host {remote.Display}", "Create VM"))
            return;
        var json = VmDefinitionJson.Serialize(definition);
        KvmJobs.RunOrQueue(this, AsJob.IsPresent, "New-KvmVm", definition.Name, output => output.WriteObject(remote.RunVm(["vm", "new", "--json", "-"], json)));
    }

    /// <summary>PowerShell may hand over PSObject-wrapped values; the reader wants plain ones.</summary>
    internal static IDictionary Unwrap(IDictionary source)
    {
        var plain = new System.Collections.Specialized.OrderedDictionary(StringComparer.OrdinalIgnoreCase);
        foreach (DictionaryEntry entry in source)
            plain[UnwrapValue(entry.Key)?.ToString() ?? ""] = UnwrapValue(entry.Value);
        return plain;
    }

    private static object? UnwrapValue(object? value) => value switch
    {
        PSObject ps => UnwrapValue(ps.BaseObject),
        IDictionary d => Unwrap(d),
        string s => s,
        IEnumerable e => e.Cast<object?>().Select(UnwrapValue).ToArray(),
        _ => value,
    };
}
