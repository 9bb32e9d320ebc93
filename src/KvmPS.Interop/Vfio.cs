using System.Runtime.InteropServices;

namespace KvmPS.Interop;

/// <summary>A VFIO container, group or device fd (/dev/vfio/vfio, /dev/vfio/N, VFIO_GROUP_GET_DEVICE_FD).</summary>
public sealed class VfioHandle : FileDescriptorHandle
{
    internal VfioHandle(int fd) : base(fd) { }
}

/// <summary>
/// Kernel VFIO (&lt;linux/vfio.h&gt;): the ioctl numbers, the structs they take, and typed wrappers; plus the socket
/// calls a vfio-user client needs (messages with descriptors attached). Layouts and numbers are checked against the
/// header by VfioLayoutTests. The vfio-user protocol reuses these layouts for its region, IRQ and DMA messages.
/// </summary>
public static unsafe partial class Vfio
{
    private const uint VFIO_TYPE = ';'; // 0x3B
    private const uint VFIO_BASE = 100;
    private static nuint Io(uint nr) => (nuint)(VFIO_TYPE << 8 | (VFIO_BASE + nr)); // _IO(VFIO_TYPE, VFIO_BASE + nr)

    public const int VFIO_API_VERSION = 0;
    public const int VFIO_TYPE1v2_IOMMU = 3;
    public static readonly nuint VFIO_GET_API_VERSION = Io(0), VFIO_CHECK_EXTENSION = Io(1), VFIO_SET_IOMMU = Io(2),
        VFIO_GROUP_GET_STATUS = Io(3), VFIO_GROUP_SET_CONTAINER = Io(4), VFIO_GROUP_UNSET_CONTAINER = Io(5), VFIO_GROUP_GET_DEVICE_FD = Io(6),
        VFIO_DEVICE_GET_INFO = Io(7), VFIO_DEVICE_GET_REGION_INFO = Io(8), VFIO_DEVICE_GET_IRQ_INFO = Io(9), VFIO_DEVICE_SET_IRQS = Io(10),
        VFIO_DEVICE_RESET = Io(11), VFIO_IOMMU_GET_INFO = Io(12), VFIO_IOMMU_MAP_DMA = Io(13), VFIO_IOMMU_UNMAP_DMA = Io(14);

    public const uint VFIO_GROUP_FLAGS_VIABLE = 1 << 0, VFIO_GROUP_FLAGS_CONTAINER_SET = 1 << 1;
    public const uint VFIO_DEVICE_FLAGS_RESET = 1 << 0, VFIO_DEVICE_FLAGS_PCI = 1 << 1;
    public const uint VFIO_REGION_INFO_FLAG_READ = 1 << 0, VFIO_REGION_INFO_FLAG_WRITE = 1 << 1, VFIO_REGION_INFO_FLAG_MMAP = 1 << 2, VFIO_REGION_INFO_FLAG_CAPS = 1 << 3;
    public const ushort VFIO_REGION_INFO_CAP_SPARSE_MMAP = 1;
    public const uint VFIO_IRQ_INFO_EVENTFD = 1 << 0, VFIO_IRQ_INFO_MASKABLE = 1 << 1, VFIO_IRQ_INFO_AUTOMASKED = 1 << 2, VFIO_IRQ_INFO_NORESIZE = 1 << 3;
    public const uint VFIO_IRQ_SET_DATA_NONE = 1 << 0, VFIO_IRQ_SET_DATA_BOOL = 1 << 1, VFIO_IRQ_SET_DATA_EVENTFD = 1 << 2,
        VFIO_IRQ_SET_ACTION_MASK = 1 << 3, VFIO_IRQ_SET_ACTION_UNMASK = 1 << 4, VFIO_IRQ_SET_ACTION_TRIGGER = 1 << 5;
    public const uint VFIO_DMA_MAP_FLAG_READ = 1 << 0, VFIO_DMA_MAP_FLAG_WRITE = 1 << 1;
    // enum { VFIO_PCI_BAR0_REGION_INDEX, …, VFIO_PCI_BAR5_REGION_INDEX, VFIO_PCI_ROM_REGION_INDEX, VFIO_PCI_CONFIG_REGION_INDEX, … }
    public const int VFIO_PCI_BAR0_REGION_INDEX = 0, VFIO_PCI_ROM_REGION_INDEX = 6, VFIO_PCI_CONFIG_REGION_INDEX = 7;
    // enum { VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_MSI_IRQ_INDEX, VFIO_PCI_MSIX_IRQ_INDEX, … }
    public const int VFIO_PCI_INTX_IRQ_INDEX = 0, VFIO_PCI_MSI_IRQ_INDEX = 1, VFIO_PCI_MSIX_IRQ_INDEX = 2;

    [StructLayout(LayoutKind.Sequential)]
    public struct vfio_group_status { public uint argsz, flags; }

    [StructLayout(LayoutKind.Sequential)]
    public struct vfio_device_info { public uint argsz, flags, num_regions, num_irqs, cap_offset; }

    [StructLayout(LayoutKind.Sequential)]
    public struct vfio_region_info { public uint argsz, flags, index, cap_offset; public ulong size, offset; }

    [StructLayout(LayoutKind.Sequential)]
    public struct vfio_info_cap_header { public ushort id, version; public uint next; }

    /// <summary>The sparse-mmap capability: its header, then <c>nr_areas</c> <see cref="vfio_region_sparse_mmap_area"/>s.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct vfio_region_info_cap_sparse_mmap { public vfio_info_cap_header header; public uint nr_areas, reserved; }

    [StructLayout(LayoutKind.Sequential)]
    public struct vfio_region_sparse_mmap_area { public ulong offset, size; }

    [StructLayout(LayoutKind.Sequential)]
    public struct vfio_irq_info { public uint argsz, flags, index, count; }

    /// <summary>The fixed part of VFIO_DEVICE_SET_IRQS; <c>data</c> (an int32 eventfd per vector, or bools) follows.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct vfio_irq_set { public uint argsz, flags, index, start, count; }

    [StructLayout(LayoutKind.Sequential)]
    public struct vfio_iommu_type1_dma_map { public uint argsz, flags; public ulong vaddr, iova, size; }

    [StructLayout(LayoutKind.Sequential)]
    public struct vfio_iommu_type1_dma_unmap { public uint argsz, flags; public ulong iova, size; }

    [LibraryImport(Libc.Lib, EntryPoint = "pread64", SetLastError = true)]
    private static partial nint Pread(int fd, void* buffer, nuint count, long offset);

    [LibraryImport(Libc.Lib, EntryPoint = "pwrite64", SetLastError = true)]
    private static partial nint Pwrite(int fd, void* buffer, nuint count, long offset);

    private static int Check(int result, string call, string target)
    {
        if (result < 0) throw NativeCallException.FromLastError(call, target);
        return result;
    }

    public static VfioHandle Open(string path)
    {
        int fd = Libc.Open(path, Libc.O_RDWR | Libc.O_CLOEXEC, 0);
        if (fd < 0) throw NativeCallException.FromLastError("open", path);
        return new VfioHandle(fd);
    }

    public static int GetApiVersion(VfioHandle container) => Libc.Ioctl(container.Fd, VFIO_GET_API_VERSION, 0);
    public static bool CheckExtension(VfioHandle container, int extension) => Libc.Ioctl(container.Fd, VFIO_CHECK_EXTENSION, extension) > 0;
    public static void SetIommu(VfioHandle container, int type) => Check(Libc.Ioctl(container.Fd, VFIO_SET_IOMMU, type), "VFIO_SET_IOMMU", "container");

    public static uint GetGroupStatus(VfioHandle group, string name)
    {
        var status = new vfio_group_status { argsz = (uint)sizeof(vfio_group_status) };
        Check(Libc.Ioctl(group.Fd, VFIO_GROUP_GET_STATUS, &status), "VFIO_GROUP_GET_STATUS", name);
        return status.flags;
    }

    public static void SetContainer(VfioHandle group, VfioHandle container, string name)
    {
        int fd = container.Fd;
        Check(Libc.Ioctl(group.Fd, VFIO_GROUP_SET_CONTAINER, &fd), "VFIO_GROUP_SET_CONTAINER", name);
    }

    public static VfioHandle GetDeviceFd(VfioHandle group, string device)
    {
        var name = System.Text.Encoding.UTF8.GetBytes(device + "\0");
        fixed (byte* p = name) return new VfioHandle(Check(Libc.Ioctl(group.Fd, VFIO_GROUP_GET_DEVICE_FD, p), "VFIO_GROUP_GET_DEVICE_FD", device));
    }

    public static vfio_device_info GetDeviceInfo(VfioHandle device, string name)
    {
        var info = new vfio_device_info { argsz = (uint)sizeof(vfio_device_info) };
        Check(Libc.Ioctl(device.Fd, VFIO_DEVICE_GET_INFO, &info), "VFIO_DEVICE_GET_INFO", name);
        return info;
    }

    /// <summary>
    /// VFIO_DEVICE_GET_REGION_INFO with room for capabilities: returns the whole reply (the struct, then the capability
    /// chain), asking again with the argsz the kernel says it needs when the first buffer was too small.
    /// </summary>
    public static byte[] GetRegionInfo(VfioHandle device, uint index, string name)
    {
        uint size = 256;
        for (int attempt = 0; attempt < 2; attempt++)
        {
            var buffer = new byte[size];
            fixed (byte* p = buffer)
            {
                var info = (vfio_region_info*)p;
                info->argsz = size;
                info->index = index;
                Check(Libc.Ioctl(device.Fd, VFIO_DEVICE_GET_REGION_INFO, p), "VFIO_DEVICE_GET_REGION_INFO", $"{name} region {index}");
                if (info->argsz <= size) return buffer;
                size = Math.Min(info->argsz, 1u << 16);
            }
        }
        throw new IOException($"VFIO_DEVICE_GET_REGION_INFO ({name} region {index}): the capability chain keeps growing");
    }

    public static vfio_irq_info GetIrqInfo(VfioHandle device, uint index, string name)
    {
        var info = new vfio_irq_info { argsz = (uint)sizeof(vfio_irq_info), index = index };
        Check(Libc.Ioctl(device.Fd, VFIO_DEVICE_GET_IRQ_INFO, &info), "VFIO_DEVICE_GET_IRQ_INFO", $"{name} irq {index}");
        return info;
    }

    /// <summary>Binds eventfds to vectors start.. of an IRQ index (a null entry unbinds that vector: fd -1); none: disables the index.</summary>
    /// <summary>VFIO_DEVICE_SET_IRQS with eventfds for <paramref name="action"/> (trigger: the device signals them; unmask: the device unmasks when they are signalled); none: disables the index.</summary>
    public static void SetIrqEventFds(VfioHandle device, uint index, uint start, IReadOnlyList<SafeHandle?> fds, string name, uint action = VFIO_IRQ_SET_ACTION_TRIGGER)
    {
        int count = fds.Count;
        int bytes = sizeof(vfio_irq_set) + count * sizeof(int);
        byte* buffer = stackalloc byte[bytes];
        var set = (vfio_irq_set*)buffer;
        *set = new vfio_irq_set
        {
            argsz = (uint)bytes, index = index, start = count == 0 ? 0 : start, count = (uint)count,
            flags = (count == 0 ? VFIO_IRQ_SET_DATA_NONE : VFIO_IRQ_SET_DATA_EVENTFD) | action,
        };
        int* data = (int*)(buffer + sizeof(vfio_irq_set));
        for (int i = 0; i < count; i++) data[i] = fds[i] is { } h ? (int)h.DangerousGetHandle() : -1;
        Check(Libc.Ioctl(device.Fd, VFIO_DEVICE_SET_IRQS, buffer), "VFIO_DEVICE_SET_IRQS", $"{name} irq {index}");
    }

    public static void Reset(VfioHandle device, string name) => Check(Libc.Ioctl(device.Fd, VFIO_DEVICE_RESET, 0), "VFIO_DEVICE_RESET", name);

    public static void MapDma(VfioHandle container, nint hostAddress, ulong iova, ulong size)
    {
        var map = new vfio_iommu_type1_dma_map
        {
            argsz = (uint)sizeof(vfio_iommu_type1_dma_map), flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
            vaddr = (ulong)hostAddress, iova = iova, size = size,
        };
        Check(Libc.Ioctl(container.Fd, VFIO_IOMMU_MAP_DMA, &map), "VFIO_IOMMU_MAP_DMA", $"iova 0x{iova:x} size 0x{size:x}");
    }

    public static void UnmapDma(VfioHandle container, ulong iova, ulong size)
    {
        var unmap = new vfio_iommu_type1_dma_unmap { argsz = (uint)sizeof(vfio_iommu_type1_dma_unmap), iova = iova, size = size };
        Check(Libc.Ioctl(container.Fd, VFIO_IOMMU_UNMAP_DMA, &unmap), "VFIO_IOMMU_UNMAP_DMA", $"iova 0x{iova:x}");
    }

    /// <summary>Reads a region through the device fd (region offset + offset within it); the whole span or an exception.</summary>
    public static void ReadAt(VfioHandle device, long offset, Span<byte> data, string name)
    {
        fixed (byte* p = data)
            if (Pread(device.Fd, p, (nuint)data.Length, offset) != data.Length) throw NativeCallException.FromLastError("pread", name);
    }

    public static void WriteAt(VfioHandle device, long offset, ReadOnlySpan<byte> data, string name)
    {
        fixed (byte* p = data)
            if (Pwrite(device.Fd, p, (nuint)data.Length, offset) != data.Length) throw NativeCallException.FromLastError("pwrite", name);
    }

    /// <summary>Maps <paramref name="size"/> bytes of a region fd shared, read-write (a BAR's mmap-able area).</summary>
    public static nint MapShared(SafeHandle fd, long offset, ulong size, string name)
    {
        bool added = false;
        fd.DangerousAddRef(ref added);
        try
        {
            nint p = Libc.Mmap(0, (nuint)size, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED, (int)fd.DangerousGetHandle(), offset);
            if (p == Libc.MAP_FAILED) throw NativeCallException.FromLastError("mmap", name);
            return p;
        }
        finally { if (added) fd.DangerousRelease(); }
    }

    public static void Unmap(nint address, ulong size) => Libc.Munmap(address, (nuint)size);

    /// <summary>
    /// Sends all of <paramref name="data"/> on a Unix socket, <paramref name="fds"/> (may be empty) attached to its
    /// first byte (SCM_RIGHTS), as a vfio-user message carries them. Blocks; MSG_NOSIGNAL: a closed peer is an exception.
    /// </summary>
    public static void SendMessage(System.Net.Sockets.Socket socket, ReadOnlySpan<byte> data, IReadOnlyList<SafeHandle> fds)
    {
        int sent = 0;
        if (fds.Count > 0) sent = UnixFdPassing.Send(socket, data, fds);
        while (sent < data.Length)
        {
            fixed (byte* p = data[sent..])
            {
                var iov = new iovec { iov_base = p, iov_len = (nuint)(data.Length - sent) };
                var message = new msghdr { msg_iov = &iov, msg_iovlen = 1 };
                nint n = Libc.Sendmsg(socket.Handle, &message, Libc.MSG_NOSIGNAL);
                if (n < 0 && Marshal.GetLastPInvokeError() == Libc.EINTR) continue;
                if (n <= 0) throw NativeCallException.FromLastError("sendmsg");
                sent += (int)n;
            }
        }
    }

    /// <summary>Receives exactly <paramref name="buffer"/>.Length bytes (descriptors that come with them go to <paramref name="fds"/>); false at a clean end of stream before the first byte.</summary>
    public static bool ReceiveExactly(System.Net.Sockets.Socket socket, Span<byte> buffer, List<MemfdHandle> fds)
    {
        int got = 0;
        while (got < buffer.Length)
        {
            int n = UnixFdPassing.Receive(socket, buffer[got..], fds);
            if (n == 0)
            {
                if (got == 0) return false;
                throw new EndOfStreamException($"the peer closed the connection after {got} of {buffer.Length} bytes");
            }
            got += n;
        }
        return true;
    }
}
