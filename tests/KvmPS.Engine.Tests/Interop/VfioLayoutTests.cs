using System.Runtime.InteropServices;
using System.Text;
using KvmPS.Engine.Tests.Support;
using KvmPS.Interop;
using Xunit;

namespace KvmPS.Engine.Tests.Interop;

/// <summary>
/// Kernel VFIO's structs, ioctl numbers and flags (KvmPS.Interop.Vfio) checked against &lt;linux/vfio.h&gt; by a compiled
/// C program. The kernel here has no VFIO, so this is what proves the layouts; the calls themselves are unrun.
/// </summary>
public class VfioLayoutTests
{
    private static readonly (Type Type, string CType, (string Cs, string C)[] Fields)[] Structs =
    [
        (typeof(Vfio.vfio_group_status), "struct vfio_group_status", [("argsz", "argsz"), ("flags", "flags")]),
        (typeof(Vfio.vfio_device_info), "struct vfio_device_info", [("argsz", "argsz"), ("flags", "flags"), ("num_regions", "num_regions"), ("num_irqs", "num_irqs"), ("cap_offset", "cap_offset")]),
        (typeof(Vfio.vfio_region_info), "struct vfio_region_info", [("argsz", "argsz"), ("flags", "flags"), ("index", "index"), ("cap_offset", "cap_offset"), ("size", "size"), ("offset", "offset")]),
        (typeof(Vfio.vfio_info_cap_header), "struct vfio_info_cap_header", [("id", "id"), ("version", "version"), ("next", "next")]),
        (typeof(Vfio.vfio_region_info_cap_sparse_mmap), "struct vfio_region_info_cap_sparse_mmap", [("header", "header"), ("nr_areas", "nr_areas"), ("reserved", "reserved")]),
        (typeof(Vfio.vfio_region_sparse_mmap_area), "struct vfio_region_sparse_mmap_area", [("offset", "offset"), ("size", "size")]),
        (typeof(Vfio.vfio_irq_info), "struct vfio_irq_info", [("argsz", "argsz"), ("flags", "flags"), ("index", "index"), ("count", "count")]),
        (typeof(Vfio.vfio_irq_set), "struct vfio_irq_set", [("argsz", "argsz"), ("flags", "flags"), ("index", "index"), ("start", "start"), ("count", "count")]),
        (typeof(Vfio.vfio_iommu_type1_dma_map), "struct vfio_iommu_type1_dma_map", [("argsz", "argsz"), ("flags", "flags"), ("vaddr", "vaddr"), ("iova", "iova"), ("size", "size")]),
        (typeof(Vfio.vfio_iommu_type1_dma_unmap), "struct vfio_iommu_type1_dma_unmap", [("argsz", "argsz"), ("flags", "flags"), ("iova", "iova"), ("size", "size")]),
    ];

    private static readonly (string Name, ulong Value)[] Constants =
    [
        ("VFIO_GET_API_VERSION", Vfio.VFIO_GET_API_VERSION), ("VFIO_CHECK_EXTENSION", Vfio.VFIO_CHECK_EXTENSION), ("VFIO_SET_IOMMU", Vfio.VFIO_SET_IOMMU),
        ("VFIO_GROUP_GET_STATUS", Vfio.VFIO_GROUP_GET_STATUS), ("VFIO_GROUP_SET_CONTAINER", Vfio.VFIO_GROUP_SET_CONTAINER),
        ("VFIO_GROUP_UNSET_CONTAINER", Vfio.VFIO_GROUP_UNSET_CONTAINER), ("VFIO_GROUP_GET_DEVICE_FD", Vfio.VFIO_GROUP_GET_DEVICE_FD),
        ("VFIO_DEVICE_GET_INFO", Vfio.VFIO_DEVICE_GET_INFO), ("VFIO_DEVICE_GET_REGION_INFO", Vfio.VFIO_DEVICE_GET_REGION_INFO),
        ("VFIO_DEVICE_GET_IRQ_INFO", Vfio.VFIO_DEVICE_GET_IRQ_INFO), ("VFIO_DEVICE_SET_IRQS", Vfio.VFIO_DEVICE_SET_IRQS),
        ("VFIO_DEVICE_RESET", Vfio.VFIO_DEVICE_RESET), ("VFIO_IOMMU_GET_INFO", Vfio.VFIO_IOMMU_GET_INFO),
        ("VFIO_IOMMU_MAP_DMA", Vfio.VFIO_IOMMU_MAP_DMA), ("VFIO_IOMMU_UNMAP_DMA", Vfio.VFIO_IOMMU_UNMAP_DMA),
        ("VFIO_API_VERSION", Vfio.VFIO_API_VERSION), ("VFIO_TYPE1v2_IOMMU", Vfio.VFIO_TYPE1v2_IOMMU),
        ("VFIO_GROUP_FLAGS_VIABLE", Vfio.VFIO_GROUP_FLAGS_VIABLE), ("VFIO_GROUP_FLAGS_CONTAINER_SET", Vfio.VFIO_GROUP_FLAGS_CONTAINER_SET),
        ("VFIO_DEVICE_FLAGS_RESET", Vfio.VFIO_DEVICE_FLAGS_RESET), ("VFIO_DEVICE_FLAGS_PCI", Vfio.VFIO_DEVICE_FLAGS_PCI),
        ("VFIO_REGION_INFO_FLAG_READ", Vfio.VFIO_REGION_INFO_FLAG_READ), ("VFIO_REGION_INFO_FLAG_WRITE", Vfio.VFIO_REGION_INFO_FLAG_WRITE),
        ("VFIO_REGION_INFO_FLAG_MMAP", Vfio.VFIO_REGION_INFO_FLAG_MMAP), ("VFIO_REGION_INFO_FLAG_CAPS", Vfio.VFIO_REGION_INFO_FLAG_CAPS),
        ("VFIO_REGION_INFO_CAP_SPARSE_MMAP", Vfio.VFIO_REGION_INFO_CAP_SPARSE_MMAP),
        ("VFIO_IRQ_INFO_EVENTFD", Vfio.VFIO_IRQ_INFO_EVENTFD), ("VFIO_IRQ_INFO_MASKABLE", Vfio.VFIO_IRQ_INFO_MASKABLE),
        ("VFIO_IRQ_INFO_AUTOMASKED", Vfio.VFIO_IRQ_INFO_AUTOMASKED), ("VFIO_IRQ_INFO_NORESIZE", Vfio.VFIO_IRQ_INFO_NORESIZE),
        ("VFIO_IRQ_SET_DATA_NONE", Vfio.VFIO_IRQ_SET_DATA_NONE), ("VFIO_IRQ_SET_DATA_BOOL", Vfio.VFIO_IRQ_SET_DATA_BOOL),
        ("VFIO_IRQ_SET_DATA_EVENTFD", Vfio.VFIO_IRQ_SET_DATA_EVENTFD), ("VFIO_IRQ_SET_ACTION_MASK", Vfio.VFIO_IRQ_SET_ACTION_MASK),
        ("VFIO_IRQ_SET_ACTION_UNMASK", Vfio.VFIO_IRQ_SET_ACTION_UNMASK), ("VFIO_IRQ_SET_ACTION_TRIGGER", Vfio.VFIO_IRQ_SET_ACTION_TRIGGER),
        ("VFIO_DMA_MAP_FLAG_READ", Vfio.VFIO_DMA_MAP_FLAG_READ), ("VFIO_DMA_MAP_FLAG_WRITE", Vfio.VFIO_DMA_MAP_FLAG_WRITE),
        ("VFIO_PCI_BAR0_REGION_INDEX", Vfio.VFIO_PCI_BAR0_REGION_INDEX), ("VFIO_PCI_ROM_REGION_INDEX", Vfio.VFIO_PCI_ROM_REGION_INDEX),
        ("VFIO_PCI_CONFIG_REGION_INDEX", Vfio.VFIO_PCI_CONFIG_REGION_INDEX), ("VFIO_PCI_INTX_IRQ_INDEX", Vfio.VFIO_PCI_INTX_IRQ_INDEX),
        ("VFIO_PCI_MSI_IRQ_INDEX", Vfio.VFIO_PCI_MSI_IRQ_INDEX), ("VFIO_PCI_MSIX_IRQ_INDEX", Vfio.VFIO_PCI_MSIX_IRQ_INDEX),
    ];

    private static Dictionary<string, ulong>? s_truth;

    private static Dictionary<string, ulong> HeaderTruth()
    {
        if (s_truth is not null) return s_truth;
        var c = new StringBuilder("#include <stdio.h>\n#include <stddef.h>\n#include <sys/ioctl.h>\n#include <linux/vfio.h>\nint main(void){\n");
        foreach (var (_, ctype, fields) in Structs)
        {
            c.Append($"printf(\"{ctype} %zu\\n\", sizeof({ctype}));\n");
            foreach (var (_, f) in fields) c.Append($"printf(\"{ctype}.{f} %zu\\n\", offsetof({ctype}, {f}));\n");
        }
        foreach (var (name, _) in Constants) c.Append($"printf(\"{name} %lu\\n\", (unsigned long)({name}));\n");
        c.Append("return 0;}\n");
        var truth = new Dictionary<string, ulong>();
        foreach (string line in NativeCompiler.CompileAndRun(c.ToString(), "vfio_layout").Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            int sp = line.LastIndexOf(' ');
            truth[line[..sp]] = ulong.Parse(line[(sp + 1)..]);
        }
        return s_truth = truth;
    }

    public static TheoryData<string> StructNames()
    {
        var data = new TheoryData<string>();
        foreach (var s in Structs) data.Add(s.CType);
        return data;
    }

    [Theory]
    [MemberData(nameof(StructNames))]
    public void StructSizeAndOffsetsMatchHeader(string ctype)
    {
        var truth = HeaderTruth();
        var (type, _, fields) = Structs.Single(s => s.CType == ctype);
        Assert.True(truth[ctype] == (ulong)Marshal.SizeOf(type), $"sizeof({ctype}): header {truth[ctype]}, C# {Marshal.SizeOf(type)}");
        foreach (var (cs, c) in fields)
            Assert.True(truth[$"{ctype}.{c}"] == (ulong)Marshal.OffsetOf(type, cs), $"{ctype}.{c}: header {truth[$"{ctype}.{c}"]}, C# {Marshal.OffsetOf(type, cs)}");
    }

    [Fact]
    public void IoctlNumbersAndFlagsMatchHeader()
    {
        var truth = HeaderTruth();
        foreach (var (name, value) in Constants)
            Assert.True(truth[name] == value, $"{name}: header 0x{truth[name]:x}, C# 0x{value:x}");
    }
}
