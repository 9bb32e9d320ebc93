using System.Management.Automation;
using KvmPS.Management.Definitions;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Set-KvmVm: changes stored settings; a running VM gets them at its next restart (or now with -RestartIfNeeded).</summary>
[Cmdlet(VerbsCommon.Set, "KvmVm", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmVm))]
public sealed class SetKvmVmCommand : KvmVmCmdletBase
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

    /// <summary>The definition after this invocation's changes (pure; unit-tested).</summary>
    internal VmDefinition Apply(VmDefinition current)
    {
        var next = current;
        if (ProcessorCount is not null || MaximumProcessorCount is not null)
        {
            var maximum = MaximumProcessorCount ?? Math.Max(current.Vcpus.Maximum, ProcessorCount ?? 0);
            next = next with { Vcpus = new VcpuSettings(ProcessorCount ?? current.Vcpus.Count, maximum) };
        }
        if (MemoryStartupBytes is not null || MemoryMinimumBytes is not null || MemoryMaximumBytes is not null)
        {
            var startup = MemoryStartupBytes ?? current.Memory.StartupBytes;
            // A fixed-size VM stays fixed-size when only its startup memory changes.
            var wasFixed = current.Memory.MinimumBytes == current.Memory.StartupBytes && current.Memory.MaximumBytes == current.Memory.StartupBytes;
            var minimum = MemoryMinimumBytes ?? (wasFixed ? startup : Math.Min(current.Memory.MinimumBytes, startup));
            var maximum = MemoryMaximumBytes ?? (wasFixed ? startup : Math.Max(current.Memory.MaximumBytes, startup));
            next = next with { Memory = new MemorySettings(startup, minimum, maximum) };
        }
        if (BalloonEnabled is { } balloon)
            next = next with { BalloonEnabled = balloon };
        if (Autostart is { } autostart)
            next = next with { Autostart = autostart };
        if (Notes is not null)
            next = next with { Notes = Notes };
        if (KernelPath is not null || InitrdPath is not null || KernelArguments is not null)
        {
            var kernel = KernelPath ?? (current.Boot as DirectKernelBoot)?.KernelPath;
            if (string.IsNullOrEmpty(kernel))
            {
                if (InitrdPath is not null || KernelArguments is not null)
                    throw new ArgumentException("-InitrdPath and -KernelArguments need a kernel: give -KernelPath.");
                next = next with { Boot = DefaultGuestBoot.Instance };
            }
            else
            {
                var old = current.Boot as DirectKernelBoot;
                next = next with
                {
                    Boot = new DirectKernelBoot(ResolvePath(kernel),
                        InitrdPath is null ? old?.InitrdPath : InitrdPath.Length == 0 ? null : ResolvePath(InitrdPath),
                        KernelArguments ?? old?.Cmdline),
                };
            }
        }
        return next;
    }

    protected override void ProcessVm(string name)
    {
        if (!Output.ShouldProcess(name, "Change VM settings"))
            return;
        var result = Manager.Update(name, Apply);
        ReportChange(result, Switch(RestartIfNeeded));
        if (Switch(PassThru))
            Output.WriteObject(new KvmVm(Manager.Get(name)));
    }

    private string ResolvePath(string path) =>
        OutputOverride is null ? GetUnresolvedProviderPathFromPSPath(path) : Path.GetFullPath(path);
}
