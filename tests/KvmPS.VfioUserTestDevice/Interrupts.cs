namespace KvmPS.VfioUserTestDevice;

/// <summary>MSI-X vectors as the client's eventfds (VFIO_USER_DEVICE_SET_IRQS), with per-vector masking.</summary>
internal sealed unsafe class Interrupts(int vectors)
{
    private readonly int[] _eventFds = Enumerable.Repeat(-1, vectors).ToArray();
    private readonly bool[] _masked = new bool[vectors];
    private readonly bool[] _pending = new bool[vectors];

    public int Vectors => vectors;
    public int Connected => _eventFds.Count(fd => fd >= 0);

    /// <summary>Takes ownership of <paramref name="fd"/> for vector <paramref name="vector"/> (-1 disconnects it).</summary>
    public void SetEventFd(int vector, int fd)
    {
        if (_eventFds[vector] >= 0) Native.Close(_eventFds[vector]);
        _eventFds[vector] = fd;
    }

    public void DisableAll()
    {
        for (int v = 0; v < vectors; v++) SetEventFd(v, -1);
        Array.Clear(_masked);
        Array.Clear(_pending);
    }

    public void Mask(int vector, bool masked)
    {
        _masked[vector] = masked;
        if (!masked && _pending[vector]) Trigger(vector);
    }

    /// <summary>Signals the vector's eventfd; false if the vector is out of range, masked (then pending) or has none.</summary>
    public bool Trigger(int vector)
    {
        if (vector < 0 || vector >= vectors) return false;
        if (_masked[vector]) { _pending[vector] = true; return false; }
        _pending[vector] = false;
        if (_eventFds[vector] < 0) return false;
        ulong one = 1;
        return Native.Write(_eventFds[vector], &one, 8) == 8;
    }
}
