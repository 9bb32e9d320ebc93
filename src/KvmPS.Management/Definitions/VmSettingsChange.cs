namespace KvmPS.Management.Definitions;

/// <summary>
/// A partial change to a VM's settings, as front ends take it (<c>New-KvmVm</c>/<c>Set-KvmVm</c> parameters,
/// <c>kvmps vm new/set</c> options): null means "leave as is". <see cref="ApplyTo"/> holds the rules that turn
/// it into a whole definition, once for every front end. Paths must already be absolute (front ends resolve them
/// against their own current directory). Errors name the schema keys (<c>VcpuCount</c>, <c>Boot.InitrdPath</c>);
/// front ends rename them to what their user typed.
/// </summary>
public sealed record VmSettingsChange
{
    /// <summary>What <c>New-KvmVm</c> gives a VM without -MemoryStartupBytes.</summary>
    public const long DefaultMemoryBytes = 256L * 1024 * 1024;

    /// <summary>What <c>New-KvmVm</c> gives a VM without -ProcessorCount.</summary>
    public const int DefaultProcessorCount = 1;

    public int? ProcessorCount { get; init; }
    public int? MaximumProcessorCount { get; init; }
    public long? MemoryStartupBytes { get; init; }
    public long? MemoryMinimumBytes { get; init; }
    public long? MemoryMaximumBytes { get; init; }
    public bool? BalloonEnabled { get; init; }
    public bool? Autostart { get; init; }
    public string? Notes { get; init; }

    /// <summary>serial.log and vmm.log rotate at this size (0: never); <see cref="VmDefinition.LogMaxBytes"/>.</summary>
    public long? LogMaxBytes { get; init; }

    /// <summary>Rotated log files kept; <see cref="VmDefinition.LogFileCount"/>.</summary>
    public int? LogFileCount { get; init; }

    /// <summary>The VM's relative CPU weight (1-10000); <see cref="VmDefinition.CpuRelativeWeight"/>.</summary>
    public int? CpuRelativeWeight { get; init; }

    /// <summary>The VM's CPU cap in percent of its vCPUs (1-100, 100: none); <see cref="VmDefinition.CpuMaximumPercent"/>.</summary>
    public int? CpuMaximumPercent { get; init; }

    /// <summary>The VMM's memory beyond guest RAM (0: no limit); <see cref="VmDefinition.VmmOverheadLimitBytes"/>.</summary>
    public long? VmmOverheadLimitBytes { get; init; }

    /// <summary>Boot this kernel directly; an empty string returns to the built-in guest.</summary>
    public string? KernelPath { get; init; }

    /// <summary>The initrd for <see cref="KernelPath"/>; an empty string removes it.</summary>
    public string? InitrdPath { get; init; }

    public string? KernelArguments { get; init; }

    /// <summary>A new VM: these settings over the defaults (1 vCPU, 256 MiB fixed memory, built-in guest).</summary>
    public VmDefinition ToNewDefinition(string name)
    {
        var defaults = new VmDefinition
        {
            Name = name,
            Memory = MemorySettings.Fixed(DefaultMemoryBytes),
            Vcpus = VcpuSettings.Fixed(DefaultProcessorCount),
        };
        return ApplyTo(defaults).Validate();
    }

    /// <summary>The definition after this change (pure; the result is not validated: the store does that).</summary>
    public VmDefinition ApplyTo(VmDefinition current)
    {
        ArgumentNullException.ThrowIfNull(current);
        var next = current;
        if (ProcessorCount is not null || MaximumProcessorCount is not null)
        {
            // Raising the count raises the maximum with it unless a maximum is given.
            var maximum = MaximumProcessorCount ?? Math.Max(current.Vcpus.Maximum, ProcessorCount ?? 0);
            next = next with { Vcpus = new VcpuSettings(ProcessorCount ?? current.Vcpus.Count, maximum) };
        }
        if (MemoryStartupBytes is not null || MemoryMinimumBytes is not null || MemoryMaximumBytes is not null)
            next = next with { Memory = ApplyMemory(current.Name, current.Memory) };
        if (BalloonEnabled is { } balloon)
            next = next with { BalloonEnabled = balloon };
        if (Autostart is { } autostart)
            next = next with { Autostart = autostart };
        if (Notes is not null)
            next = next with { Notes = Notes };
        if (LogMaxBytes is { } logMax)
            next = next with { LogMaxBytes = logMax };
        if (LogFileCount is { } logFiles)
            next = next with { LogFileCount = logFiles };
        if (KernelPath is not null || InitrdPath is not null || KernelArguments is not null)
            next = next with { Boot = ApplyBoot(current) };
        if (CpuRelativeWeight is { } weight)
            next = next with { CpuRelativeWeight = weight };
        if (CpuMaximumPercent is { } cap)
            next = next with { CpuMaximumPercent = cap };
        if (VmmOverheadLimitBytes is { } overhead)
            next = next with { VmmOverheadLimitBytes = overhead };
        return next;
    }

    private MemorySettings ApplyMemory(string name, MemorySettings current)
    {
        var startup = MemoryStartupBytes ?? current.StartupBytes;
        // A fixed-size VM stays fixed-size when only its startup memory changes; a range widens to include it.
        var wasFixed = current.MinimumBytes == current.StartupBytes && current.MaximumBytes == current.StartupBytes;
        var minimum = MemoryMinimumBytes ?? (wasFixed ? startup : Math.Min(current.MinimumBytes, startup));
        var maximum = MemoryMaximumBytes ?? (wasFixed ? startup : Math.Max(current.MaximumBytes, startup));
        // Blame the setting that was given: a minimum raised above the startup memory is the minimum's fault.
        if (MemoryMinimumBytes is not null && MemoryStartupBytes is null && minimum > startup)
            throw new VmDefinitionException(name, "MemoryMinimumBytes",
                $"must not exceed MemoryStartupBytes ({DisplayText.Bytes(minimum)} > {DisplayText.Bytes(startup)}); raise MemoryStartupBytes too");
        if (MemoryMaximumBytes is not null && MemoryStartupBytes is null && maximum < startup)
            throw new VmDefinitionException(name, "MemoryMaximumBytes",
                $"must not be below MemoryStartupBytes ({DisplayText.Bytes(maximum)} < {DisplayText.Bytes(startup)}); lower MemoryStartupBytes too");
        return new MemorySettings(startup, minimum, maximum);
    }

    private BootSource ApplyBoot(VmDefinition current)
    {
        var old = current.Boot as DirectKernelBoot;
        var kernel = KernelPath ?? old?.KernelPath;
        if (string.IsNullOrEmpty(kernel))
        {
            if (!string.IsNullOrEmpty(InitrdPath))
                throw new VmDefinitionException(current.Name, "Boot.InitrdPath", "needs Boot.KernelPath (an initrd is only used with direct kernel boot)");
            if (KernelArguments is not null)
                throw new VmDefinitionException(current.Name, "Boot.Cmdline", "needs Boot.KernelPath (kernel arguments are only used with direct kernel boot)");
            return DefaultGuestBoot.Instance;
        }
        var initrd = InitrdPath is null ? old?.InitrdPath : InitrdPath.Length == 0 ? null : InitrdPath;
        return new DirectKernelBoot(kernel, initrd, KernelArguments ?? old?.Cmdline);
    }
}
