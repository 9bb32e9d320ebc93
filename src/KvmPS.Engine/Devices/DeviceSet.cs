using KvmPS.Devices.Pci;
using KvmPS.Devices.Virtio;
using KvmPS.State;

namespace KvmPS.Devices;

/// <summary>
/// The machine's devices as capabilities: what can be paused and what can be saved, in a fixed order. The VM builds
/// one from its platform devices (serial, RTC, i8042, ACPI PM, fw_cfg: whichever implement the interfaces), its
/// PCI bus and its device I/O loop; snapshot and restore go through it and never name a device type.
/// </summary>
public sealed class DeviceSet
{
    private readonly IReadOnlyList<object> _platform;
    private readonly PciBus? _pci;
    private readonly IoEventLoop? _io;

    public DeviceSet(IEnumerable<object> platformDevices, PciBus? pci, IoEventLoop? io)
    {
        _platform = platformDevices.ToArray();
        _pci = pci;
        _io = io;
    }

    /// <summary>
    /// Every record in restore order: platform devices in the order given, then the PCI bus slot by slot
    /// (<see cref="PciBus.PersistentParts"/>). Names are unique (checked here).
    /// </summary>
    public IReadOnlyList<IPersistent> PersistentParts()
    {
        var parts = _platform.OfType<IPersistent>().Concat(_pci?.PersistentParts() ?? []).ToArray();
        var duplicate = parts.GroupBy(p => p.StateName).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new InvalidOperationException($"two machine parts save state as '{duplicate.Key}'.");
        return parts;
    }

    /// <summary>
    /// Everything with activity of its own, in pause order: the device I/O thread first (its in-flight request
    /// completes), then platform devices, then each PCI function (transport, then its device's threads).
    /// Resume in reverse order.
    /// </summary>
    public IReadOnlyList<IPausable> PausableParts()
    {
        var parts = new List<IPausable>();
        if (_io is not null) parts.Add(_io);
        parts.AddRange(_platform.OfType<IPausable>());
        if (_pci is not null) parts.AddRange(_pci.PausableParts());
        return parts;
    }

    /// <summary>Pauses every part in order; returns when all are quiescent.</summary>
    public void PauseAll()
    {
        foreach (var p in PausableParts()) p.Pause();
    }

    /// <summary>Resumes every part in reverse pause order (a restored machine's parts start here too).</summary>
    public void ResumeAll()
    {
        var parts = PausableParts();
        for (int i = parts.Count - 1; i >= 0; i--) parts[i].Resume();
    }
}
