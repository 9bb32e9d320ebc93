using System.Management.Automation;
using KvmPS.Management.Definitions;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>
/// Set-KvmFirmware: the boot order of a firmware-booted VM (Dvd, Disk, Network; Hyper-V's Set-VMFirmware), a first
/// boot device moved to the front of it, or a device to boot from at the next start only. Takes effect at the next start.
/// </summary>
[Cmdlet(VerbsCommon.Set, "KvmFirmware", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
[OutputType(typeof(KvmFirmware))]
public sealed class SetKvmFirmwareCommand : KvmVmCmdletBase
{
    /// <summary>The whole order; an empty list goes back to the default (boot disk first).</summary>
    [Parameter]
    [AllowEmptyCollection]
    public BootDevice[]? BootOrder { get; set; }

    /// <summary>Moves this device to the front of the boot order (kept for every start).</summary>
    [Parameter]
    public BootDevice? FirstBootDevice { get; set; }

    /// <summary>Boot from this device at the next start only; later starts use the boot order again.</summary>
    [Parameter]
    public BootDevice? BootOnce { get; set; }

    /// <summary>Drop a pending one-time boot device.</summary>
    [Parameter]
    public SwitchParameter ClearBootOnce { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void Begin()
    {
        if (BootOrder is null && FirstBootDevice is null && BootOnce is null && !ClearBootOnce.IsPresent)
            throw KvmParameterException.Combination("BootOrder", null, "give -BootOrder, -FirstBootDevice, -BootOnce or -ClearBootOnce");
        if (BootOnce is not null && ClearBootOnce.IsPresent)
            throw KvmParameterException.Combination("BootOnce", BootOnce, "-BootOnce and -ClearBootOnce contradict each other");
    }

    protected override void ProcessVm(string name)
    {
        var current = Manager.Store.Get(name).BootOrder;
        IReadOnlyList<BootDevice>? order = BootOrder ?? (FirstBootDevice is null ? null : current);
        if (FirstBootDevice is { } first)
            order = [first, .. (order!.Count > 0 ? order : [BootDevice.Disk]).Where(d => d != first)];
        var text = order is null ? "" : $"boot order {(order.Count == 0 ? "(default: boot disk first)" : string.Join(", ", order))}";
        if (BootOnce is { } once)
            text += (text.Length > 0 ? "; " : "") + $"boot once from {once}";
        if (ClearBootOnce.IsPresent)
            text += (text.Length > 0 ? "; " : "") + "no one-time boot device";
        if (!Output.ShouldProcess(name, "Set " + text))
            return;
        ReportChange(Manager.SetFirmware(name, order, BootOnce, ClearBootOnce.IsPresent), restartIfNeeded: false);
        if (PassThru.IsPresent)
            Output.WriteObject(KvmFirmware.From(Manager.Store.Get(name)));
    }
}
