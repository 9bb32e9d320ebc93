namespace KvmPS.VfioUserTestDevice;

/// <summary>
/// The vectors of one message-signalled IRQ index (MSI-X or MSI) as the client's eventfds (VFIO_USER_DEVICE_SET_IRQS),
/// with per-vector masking: a vector raised while masked is pending and fires on unmask.
/// </summary>
internal sealed unsafe class EventFdVectors(int vectors)
{
    private readonly int[] _eventFds = Enumerable.Repeat(-1, vectors).ToArray();
    private readonly bool[] _masked = new bool[vectors];
    private readonly bool[] _pending = new bool[vectors];

    public int Vectors => vectors;
    public int Connected => _eventFds.Count(fd => fd >= 0);
    /// <summary>True while any vector has an eventfd: the client enabled the index, so completions raise its vectors.</summary>
    public bool Enabled => Connected > 0;

    /// <summary>Takes ownership of <paramref name="fd"/> for vector <paramref name="vector"/> (-1 disconnects it).</summary>
    public void SetEventFd(int vector, int fd)
    {
        if (_eventFds[vector] >= 0) Native.Close(_eventFds[vector]);
        _eventFds[vector] = fd;
    }

    public void Disable()
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

/// <summary>
/// The device's interrupts: MSI-X and MSI vectors (<see cref="EventFdVectors"/>), and INTx (with --intx), which behaves
/// like VFIO's: level-triggered and automasked. Raising it while unmasked signals the trigger eventfd and masks it; the
/// client's unmask eventfd (KVM's resample eventfd: the guest's EOI) or an UNMASK action unmasks it, and a line still
/// asserted then fires again. The unmask eventfd is polled (the server has one thread): after each message is handled
/// (so an IRQ_ACK in that message has lowered the line first) and before the line is raised.
/// </summary>
internal sealed unsafe class Interrupts(int msixVectors, int msiVectors)
{
    private int _intxFd = -1, _intxUnmaskFd = -1;
    private bool _intxMasked, _intxAsserted;

    public EventFdVectors Msix { get; } = new(msixVectors);
    public EventFdVectors Msi { get; } = new(msiVectors);
    public bool IntxConnected => _intxFd >= 0;
    public bool IntxAsserted => _intxAsserted;
    /// <summary>Called each time INTx signals its trigger eventfd (a raise, or a re-fire on unmask).</summary>
    public Action? IntxSignalled { get; set; }

    public void DisableAll()
    {
        Msix.Disable();
        Msi.Disable();
        DisableIntx();
    }

    // ---- INTx ----
    /// <summary>Takes ownership of the trigger eventfd (-1: INTx off, which also drops the unmask eventfd).</summary>
    public void SetIntxEventFd(int fd)
    {
        if (fd < 0) { DisableIntx(); return; }
        if (_intxFd >= 0) Native.Close(_intxFd);
        _intxFd = fd;
        _intxMasked = false;
    }

    /// <summary>Takes ownership of the unmask eventfd (signalled by KVM when the guest EOIs the line).</summary>
    public void SetIntxUnmaskEventFd(int fd)
    {
        if (_intxUnmaskFd >= 0) Native.Close(_intxUnmaskFd);
        _intxUnmaskFd = fd;
    }

    public void DisableIntx()
    {
        if (_intxFd >= 0) Native.Close(_intxFd);
        if (_intxUnmaskFd >= 0) Native.Close(_intxUnmaskFd);
        _intxFd = _intxUnmaskFd = -1;
        _intxMasked = _intxAsserted = false;
    }

    public void MaskIntx(bool masked)
    {
        _intxMasked = masked;
        if (!masked) FireIntx();
    }

    /// <summary>Asserts the line (a completion); true if that signalled the trigger eventfd now.</summary>
    public bool RaiseIntx()
    {
        PollIntxUnmask(); // first: an unmask waiting since the last EOI belongs to the previous interrupt
        _intxAsserted = true;
        return FireIntx();
    }

    /// <summary>The driver acknowledged the interrupt (IRQ_ACK): the line goes low.</summary>
    public void LowerIntx() => _intxAsserted = false;

    /// <summary>Takes an unmask the client signalled since the last look; a line still asserted fires again.</summary>
    public void PollIntxUnmask()
    {
        if (_intxUnmaskFd < 0) return;
        var poll = new Native.PollFd { Fd = _intxUnmaskFd, Events = Native.POLLIN };
        if (Native.Poll(&poll, 1, 0) != 1 || (poll.Revents & Native.POLLIN) == 0) return;
        ulong count;
        if (Native.Read(_intxUnmaskFd, &count, 8) != 8 || !_intxMasked) return;
        _intxMasked = false;
        FireIntx();
    }

    private bool FireIntx()
    {
        if (!_intxAsserted || _intxMasked || _intxFd < 0) return false;
        ulong one = 1;
        if (Native.Write(_intxFd, &one, 8) != 8) return false;
        _intxMasked = true; // automasked until the client unmasks
        IntxSignalled?.Invoke();
        return true;
    }
}
