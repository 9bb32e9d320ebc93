namespace KvmPS.VfioUserTestDevice;

/// <summary>The client's DMA regions (VFIO_USER_DMA_MAP): each mapped from the fd it came with.</summary>
internal sealed class DmaSpace
{
    private sealed record Region(ulong Address, ulong Size, nint Host, bool Writable);
    private readonly List<Region> _regions = [];

    public int Count => _regions.Count;

    /// <summary>Maps <paramref name="fd"/> at <paramref name="offset"/> for [address, address+size); returns 0 or an errno.</summary>
    public int Map(ulong address, ulong size, ulong offset, int fd, bool writable)
    {
        if (size == 0 || address % 4096 != 0 || size % 4096 != 0 || offset % 4096 != 0 || address + size < address)
            return VfioUser.EINVAL;
        foreach (var r in _regions)
            if (address < r.Address + r.Size && r.Address < address + size) return VfioUser.EEXIST;
        nint host = 0;
        if (fd >= 0)
        {
            // Writable mappings need PROT_WRITE; a read-only fd (O_RDONLY) would then fail, so ask only for what the flags grant.
            int prot = Native.PROT_READ | (writable ? Native.PROT_WRITE : 0);
            host = Native.Mmap(0, (nuint)size, prot, Native.MAP_SHARED, fd, (long)offset);
            if (host == -1) return VfioUser.EFAULT;
        }
        _regions.Add(new Region(address, size, host, writable));
        return 0;
    }

    /// <summary>Removes the region exactly at [address, address+size); returns 0 or ENOENT.</summary>
    public int Unmap(ulong address, ulong size)
    {
        int i = _regions.FindIndex(r => r.Address == address && r.Size == size);
        if (i < 0) return VfioUser.ENOENT;
        Release(_regions[i]);
        _regions.RemoveAt(i);
        return 0;
    }

    public void UnmapAll()
    {
        foreach (var r in _regions) Release(r);
        _regions.Clear();
    }

    /// <summary>Host address of [address, address+length) if one writable, fd-backed region holds all of it.</summary>
    public nint? Translate(ulong address, uint length)
    {
        foreach (var r in _regions)
        {
            if (address >= r.Address && address - r.Address < r.Size && length <= r.Size - (address - r.Address))
                return r.Host != 0 && r.Writable ? r.Host + (nint)(address - r.Address) : null;
        }
        return null;
    }

    private static void Release(Region r)
    {
        if (r.Host != 0) Native.Munmap(r.Host, (nuint)r.Size);
    }
}
