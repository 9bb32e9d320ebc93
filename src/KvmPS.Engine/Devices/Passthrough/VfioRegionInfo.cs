using System.Buffers.Binary;
using System.Runtime.InteropServices;
using static KvmPS.Interop.Vfio;

namespace KvmPS.Devices.Passthrough;

/// <summary>struct vfio_region_info as both transports receive it (kernel VFIO's ioctl, vfio-user's reply).</summary>
public static class VfioRegionInfo
{
    /// <summary>Reads struct vfio_region_info and its capability chain (the sparse-mmap areas), every offset bounds-checked.</summary>
    public static PassthroughRegion Parse(byte[] reply, int index, SafeHandle? fd, Func<string, Exception> fail)
    {
        uint flags = BinaryPrimitives.ReadUInt32LittleEndian(reply.AsSpan(4));
        uint replyIndex = BinaryPrimitives.ReadUInt32LittleEndian(reply.AsSpan(8));
        uint capOffset = BinaryPrimitives.ReadUInt32LittleEndian(reply.AsSpan(12));
        ulong size = BinaryPrimitives.ReadUInt64LittleEndian(reply.AsSpan(16));
        ulong offset = BinaryPrimitives.ReadUInt64LittleEndian(reply.AsSpan(24));
        if (replyIndex != (uint)index) throw fail($"asked for region {index}, the reply describes region {replyIndex}");
        if (size > 1UL << 40) throw fail($"region {index} claims 0x{size:x} bytes");
        var areas = new List<MmapArea>();
        bool sparse = false;
        if ((flags & VFIO_REGION_INFO_FLAG_CAPS) != 0)
        {
            for (int hops = 0; capOffset != 0; hops++)
            {
                if (hops > 16 || capOffset < 32 || capOffset + 8 > (uint)reply.Length) throw fail($"region {index}'s capability chain is malformed (offset {capOffset})");
                ushort id = BinaryPrimitives.ReadUInt16LittleEndian(reply.AsSpan((int)capOffset));
                uint next = BinaryPrimitives.ReadUInt32LittleEndian(reply.AsSpan((int)capOffset + 4));
                if (id == VFIO_REGION_INFO_CAP_SPARSE_MMAP)
                {
                    if (capOffset + 16 > (uint)reply.Length) throw fail($"region {index}'s sparse-mmap capability is truncated");
                    uint count = BinaryPrimitives.ReadUInt32LittleEndian(reply.AsSpan((int)capOffset + 8));
                    if (count > 64 || capOffset + 16 + count * 16 > (uint)reply.Length) throw fail($"region {index}'s sparse-mmap capability claims {count} areas beyond the reply");
                    sparse = true;
                    for (int i = 0; i < count; i++)
                    {
                        int at = (int)capOffset + 16 + i * 16;
                        var area = new MmapArea(BinaryPrimitives.ReadUInt64LittleEndian(reply.AsSpan(at)), BinaryPrimitives.ReadUInt64LittleEndian(reply.AsSpan(at + 8)));
                        if (area.Size == 0 || area.Offset + area.Size > size || area.Offset + area.Size < area.Offset)
                            throw fail($"region {index}'s mmap area 0x{area.Offset:x}+0x{area.Size:x} lies outside the region (0x{size:x} bytes)");
                        areas.Add(area);
                    }
                }
                capOffset = next;
            }
        }
        bool mappable = (flags & VFIO_REGION_INFO_FLAG_MMAP) != 0 && fd is not null;
        if (mappable && !sparse && size > 0) areas.Add(new MmapArea(0, size));
        return new PassthroughRegion(index, flags, size, offset, mappable ? areas : [], mappable ? fd : null);
    }

}
