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
public sealed class SetKvmFirmwareCommand : KvmRemoteVmCmdletBase
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
        IReadOnlyList<BootDevice>? order = BootOrder;
        if (FirstBootDevice is { } first)
            order = BootOrders.WithFirst(order ?? Manager.Store.Get(name).BootOrder, first);
        if (!Output.ShouldProcess(name, Describe(order, null)))
            return;
        ReportChange(Manager.SetFirmware(name, order, BootOnce, ClearBootOnce.IsPresent), restartIfNeeded: false);
        if (PassThru.IsPresent)
            Output.WriteObject(KvmFirmware.From(Manager.Store.Get(name)));
    }

    /// <summary>What the change does, for -WhatIf and -Confirm (<paramref name="first"/>: a first device the host puts in front).</summary>
    private string Describe(IReadOnlyList<BootDevice>? order, BootDevice? first)
    {
        var parts = new List<string>();
        if (order is not null)
            parts.Add($"boot order {(order.Count == 0 ? "(default: boot disk first)" : string.Join(", ", order))}");
        if (first is not null)
            parts.Add($"first boot device {first}");
        if (BootOnce is { } once)
            parts.Add($"boot once from {once}");
        if (ClearBootOnce.IsPresent)
            parts.Add("no one-time boot device");
        return "Set " + string.Join("; ", parts);
    }

    /// <summary>-HostName: kvmps vm boot-order there (--first moves the device to the front of that host's order).</summary>
    internal override void ProcessRemoteVm(RemoteHost remote, string name)
    {
        var options = new List<string>();
        if (FirstBootDevice is { } first)
            options.AddRange(["--first", first.ToString()]);
        if (BootOnce is { } once)
            options.AddRange(["--once", once.ToString()]);
        if (ClearBootOnce.IsPresent)
            options.Add("--clear-once");
        var order = BootOrder is null ? "keep" : BootOrder.Length == 0 ? "default" : string.Join(",", BootOrder);
        if (!Output.ShouldProcess($"{name} on host {remote.Display}", Describe(BootOrder, FirstBootDevice)))
            return;
        RemoteChangeConfirmed(remote, name, "boot-order", options, [order]);
        if (PassThru.IsPresent)
            GetKvmFirmwareCommand.WriteRemote(this, remote, name);
    }
}
