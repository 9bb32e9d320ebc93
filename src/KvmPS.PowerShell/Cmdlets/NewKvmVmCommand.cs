using System.Collections;
using System.Management.Automation;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Completers;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>New-KvmVm: stores a new VM (and creates its disk images); it is not started.</summary>
[Cmdlet(VerbsCommon.New, "KvmVm", DefaultParameterSetName = ParametersSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmVm), typeof(KvmJob))]
public sealed class NewKvmVmCommand : KvmCmdletBase
{
    internal const string ParametersSet = "Parameters";
    internal const string DefinitionSet = "Definition";
    internal const long DefaultMemoryBytes = 256L * 1024 * 1024;

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
    public long MemoryStartupBytes { get; set; } = DefaultMemoryBytes;

    [Parameter(ParameterSetName = ParametersSet)]
    [ValidateRange(4096, long.MaxValue)]
    public long? MemoryMinimumBytes { get; set; }

    [Parameter(ParameterSetName = ParametersSet)]
    [ValidateRange(4096, long.MaxValue)]
    public long? MemoryMaximumBytes { get; set; }

    [Parameter(ParameterSetName = ParametersSet)]
    [ValidateRange(1, VcpuSettings.Limit)]
    public int ProcessorCount { get; set; } = 1;

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

    [Parameter]
    public SwitchParameter AsJob { get; set; }

    /// <summary>The definition this invocation describes (resolving paths against the current directory).</summary>
    internal VmDefinition BuildDefinition()
    {
        if (Definition is not null)
            return VmDefinitionReader.FromDictionary(Unwrap(Definition));
        var memory = new MemorySettings(MemoryStartupBytes, MemoryMinimumBytes ?? MemoryStartupBytes, MemoryMaximumBytes ?? MemoryStartupBytes);
        BootSource boot = KernelPath is null
            ? DefaultGuestBoot.Instance
            : new DirectKernelBoot(ResolvePath(KernelPath), InitrdPath is null ? null : ResolvePath(InitrdPath), KernelArguments);
        if (KernelPath is null && (InitrdPath is not null || KernelArguments is not null))
            throw new ArgumentException("-InitrdPath and -KernelArguments need -KernelPath.");
        return new VmDefinition
        {
            Name = Name!,
            Memory = memory,
            Vcpus = new VcpuSettings(ProcessorCount, MaximumProcessorCount ?? ProcessorCount),
            Boot = boot,
            BalloonEnabled = Switch(BalloonEnabled),
            Autostart = Switch(Autostart),
            Notes = Notes ?? "",
        }.Validate();
    }

    protected override void Process()
    {
        var definition = BuildDefinition();
        if (!Output.ShouldProcess(definition.Name, $"Create VM ({definition.Vcpus.Count} vCPUs, {SizeParser.Format(definition.Memory.StartupBytes)})"))
            return;
        var manager = Manager;
        KvmJobs.RunOrQueue(this, Switch(AsJob), "New-KvmVm", definition.Name, output =>
        {
            var progress = output.Progress();
            output.WriteObject(new KvmVm(manager.New(definition, progress)));
        });
    }

    private string ResolvePath(string path) =>
        OutputOverride is null ? GetUnresolvedProviderPathFromPSPath(path) : Path.GetFullPath(path);

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
