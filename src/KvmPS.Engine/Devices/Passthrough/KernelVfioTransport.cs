using System.Text.RegularExpressions;
using KvmPS.Interop;
using KvmPS.Vm;

namespace KvmPS.Devices.Passthrough;

/// <summary>
/// A host PCI function bound to vfio-pci, through the kernel's VFIO container/group/device fds (type-1 v2 IOMMU).
/// Region accesses are pread/pwrite on the device fd at the region's offset; mmap-able areas map the device fd.
/// NOT RUN ON REAL HARDWARE: the hosts this was written on have no IOMMU and no VFIO (docs/devices.md, "Passthrough",
/// gives the steps to verify it). Struct layouts and ioctl numbers are checked against &lt;linux/vfio.h&gt;.
/// </summary>
public sealed partial class KernelVfioTransport : IPassthroughTransport
{
    private readonly VfioHandle _container, _group, _device;
    private readonly Dictionary<int, ulong> _regionOffsets = [];
    private readonly object _lock = new();
    private readonly List<(ulong Iova, ulong Size)> _dma = [];
    private string? _failed;

    public string Name { get; }
    public string? Failed { get { lock (_lock) return _failed; } }

    [GeneratedRegex("^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\\.[0-7]$")]
    private static partial Regex HostAddress();

    /// <summary>True when <paramref name="host"/> is a full PCI address (domain:bus:device.function, lower-case hex).</summary>
    public static bool IsHostAddress(string host) => HostAddress().IsMatch(host);

    private KernelVfioTransport(string name, VfioHandle container, VfioHandle group, VfioHandle device)
    {
        Name = name;
        _container = container;
        _group = group;
        _device = device;
    }

    /// <summary>
    /// Opens <paramref name="host"/>'s IOMMU group, puts it in a new container with the type-1 v2 IOMMU and takes the
    /// device fd. The device must already be bound to vfio-pci (the management layer does that; docs/devices.md).
    /// </summary>
    public static KernelVfioTransport Open(string host, string sysfsRoot = "/sys", string vfioRoot = "/dev/vfio")
    {
        string name = $"vfio {host}";
        if (!IsHostAddress(host)) throw new PassthroughException(name, "not a PCI address like 0000:03:00.0");
        string groupLink = Path.Combine(sysfsRoot, "bus/pci/devices", host, "iommu_group");
        string? target;
        try { target = new FileInfo(groupLink).LinkTarget; }
        catch (IOException e) { throw new PassthroughException(name, $"cannot read {groupLink}: {e.Message}", e); }
        if (target is null) throw new PassthroughException(name, $"{groupLink} does not exist: no such device, or the host has no IOMMU (enable VT-d/AMD-Vi and intel_iommu=on)");
        string group = Path.GetFileName(target);
        var handles = new List<VfioHandle>();
        try
        {
            var container = Open(Path.Combine(vfioRoot, "vfio"), name, handles);
            if (Vfio.GetApiVersion(container) != Vfio.VFIO_API_VERSION) throw new PassthroughException(name, "the kernel's VFIO API version is not 0");
            if (!Vfio.CheckExtension(container, Vfio.VFIO_TYPE1v2_IOMMU)) throw new PassthroughException(name, "the kernel has no type-1 v2 IOMMU for VFIO");
            var groupFd = Open(Path.Combine(vfioRoot, group), name, handles);
            uint status = Vfio.GetGroupStatus(groupFd, name);
            if ((status & Vfio.VFIO_GROUP_FLAGS_VIABLE) == 0)
                throw new PassthroughException(name, $"IOMMU group {group} is not viable: every device in it must be bound to vfio-pci or to no driver");
            Vfio.SetContainer(groupFd, container, name);
            Vfio.SetIommu(container, Vfio.VFIO_TYPE1v2_IOMMU);
            var device = Vfio.GetDeviceFd(groupFd, host);
            handles.Add(device);
            return new KernelVfioTransport(name, container, groupFd, device);
        }
        catch (NativeCallException e)
        {
            foreach (var h in handles) h.Dispose();
            throw new PassthroughException(name, e.Message, e);
        }
        catch
        {
            foreach (var h in handles) h.Dispose();
            throw;
        }
    }

    private static VfioHandle Open(string path, string name, List<VfioHandle> handles)
    {
        try
        {
            var h = Vfio.Open(path);
            handles.Add(h);
            return h;
        }
        catch (NativeCallException e) { throw new PassthroughException(name, $"cannot open {path}: {e.Message} (is vfio-pci loaded and the device bound to it?)", e); }
    }

    private T Call<T>(Func<T> call)
    {
        lock (_lock)
        {
            if (_failed is not null) throw new PassthroughException(Name, $"the device is unusable: {_failed}");
            try { return call(); }
            catch (NativeCallException e) { throw new PassthroughException(Name, e.Message, e); }
        }
    }

    public PassthroughDeviceInfo GetDeviceInfo() => Call(() =>
    {
        var info = Vfio.GetDeviceInfo(_device, Name);
        return new PassthroughDeviceInfo(info.flags, (int)Math.Min(info.num_regions, 64), (int)Math.Min(info.num_irqs, 64));
    });

    public PassthroughRegion GetRegionInfo(int index) => Call(() =>
    {
        var region = VfioRegionInfo.Parse(Vfio.GetRegionInfo(_device, (uint)index, Name), index, _device, m => new PassthroughException(Name, m));
        _regionOffsets[index] = region.MapOffset;
        return region;
    });

    public PassthroughIrqInfo GetIrqInfo(int index) => Call(() =>
    {
        var info = Vfio.GetIrqInfo(_device, (uint)index, Name);
        return new PassthroughIrqInfo(index, info.flags, (int)Math.Min(info.count, 2048));
    });

    private long OffsetOf(int region, ulong offset)
    {
        if (!_regionOffsets.TryGetValue(region, out ulong start)) start = GetRegionInfo(region).MapOffset;
        return (long)(start + offset);
    }

    public void RegionRead(int region, ulong offset, Span<byte> data)
    {
        long at = OffsetOf(region, offset);
        lock (_lock)
        {
            try { Vfio.ReadAt(_device, at, data, $"{Name} region {region}"); }
            catch (NativeCallException e) { throw new PassthroughException(Name, e.Message, e); }
        }
    }

    public void RegionWrite(int region, ulong offset, ReadOnlySpan<byte> data)
    {
        long at = OffsetOf(region, offset);
        lock (_lock)
        {
            try { Vfio.WriteAt(_device, at, data, $"{Name} region {region}"); }
            catch (NativeCallException e) { throw new PassthroughException(Name, e.Message, e); }
        }
    }

    public void SetIrqEventFds(int irqIndex, IReadOnlyList<EventFdHandle> fds) =>
        Call(() => { Vfio.SetIrqEventFds(_device, (uint)irqIndex, 0, fds, Name); return 0; });

    public void SetIrqUnmaskEventFd(int irqIndex, EventFdHandle fd) =>
        Call(() => { Vfio.SetIrqEventFds(_device, (uint)irqIndex, 0, [fd], Name, Vfio.VFIO_IRQ_SET_ACTION_UNMASK); return 0; });

    public void Reset() => Call(() => { Vfio.Reset(_device, Name); return 0; });

    /// <summary>Maps every RAM region at its guest-physical address (the IOVA the guest's drivers program).</summary>
    public void MapGuestMemory(GuestMemory memory) => Call(() =>
    {
        foreach (var r in memory.Regions)
        {
            Vfio.MapDma(_container, r.HostAddress, r.GuestAddress, r.SizeBytes);
            _dma.Add((r.GuestAddress, r.SizeBytes));
        }
        return 0;
    });

    public void Dispose()
    {
        lock (_lock)
        {
            _failed ??= "the device was closed";
            foreach (var (iova, size) in _dma)
                try { Vfio.UnmapDma(_container, iova, size); } catch (NativeCallException) { } // closing the container unmaps too
            _dma.Clear();
            _device.Dispose();
            _group.Dispose();
            _container.Dispose();
        }
    }
}
