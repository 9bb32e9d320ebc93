using KvmPS.State;

namespace KvmPS.Devices.Legacy;

/// <summary>
/// A 16550A UART (the console on COM1): transmit goes to a sink, receive comes from a host input queue,
/// interrupts for received data, transmitter empty and line status, with the DLAB divisor latch and loopback.
/// </summary>
public sealed class Serial16550 : IBusDevice, IPersistent, IPausable
{
    public const ushort Com1Port = 0x3f8;
    public const byte Com1Irq = 4;

    // Registers (offset from base)
    private const int RBR_THR = 0, IER = 1, IIR_FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7;
    private const byte IER_RDA = 0x01, IER_THRE = 0x02, IER_RLS = 0x04;
    private const byte IIR_NONE = 0x01, IIR_THRE = 0x02, IIR_RDA = 0x04, IIR_FIFO_ENABLED = 0xC0;
    private const byte LCR_DLAB = 0x80;
    private const byte LSR_DR = 0x01, LSR_OE = 0x02, LSR_THRE = 0x20, LSR_TEMT = 0x40;
    private const byte MCR_LOOP = 0x10, MCR_OUT2 = 0x08;
    private const int FifoSize = 64, InputQueueLimit = 4096;

    private readonly object _lock = new();
    private readonly Queue<byte> _rx = new();
    // Host input that arrived before the guest turned its receiver on (RX interrupt enabled or RBR read):
    // held here so the FIFO reset a driver does at init cannot drop it.
    private readonly Queue<byte> _held = new();
    private bool _receiverOpen;
    private readonly IInterruptLine _irq;
    private readonly ByteSink _output;
    private byte _ier, _lcr = 0x03, _mcr = MCR_OUT2, _lsr = LSR_THRE | LSR_TEMT, _msr = 0xB0, _scr, _dll = 0x0c, _dlm;
    private bool _thrEmptyPending = true, _fifoEnabled;
    private long _bytesOut;

    public string Name => "serial";
    public long BytesTransmitted => Interlocked.Read(ref _bytesOut);

    public Serial16550(IInterruptLine irq, ByteSink output)
    {
        _irq = irq;
        _output = output;
    }

    /// <summary>Host → guest bytes. Returns how many were queued (input beyond the queue limit is dropped, as a real UART overruns).</summary>
    public int EnqueueInput(ReadOnlySpan<byte> bytes)
    {
        int queued = 0;
        lock (_lock)
        {
            if (_paused)
            {
                // The VM is paused (a snapshot may be reading this UART): keep the bytes on the host side, no IRQ.
                foreach (byte b in bytes) if (_whilePaused.Count < InputQueueLimit) { _whilePaused.Enqueue(b); queued++; }
                return queued;
            }
            if (!_receiverOpen)
            {
                foreach (byte b in bytes) if (_held.Count < InputQueueLimit) { _held.Enqueue(b); queued++; }
                return queued;
            }
            foreach (byte b in bytes)
            {
                if (_rx.Count >= InputQueueLimit) { _lsr |= LSR_OE; break; }
                _rx.Enqueue(b);
                queued++;
            }
            if (queued > 0) _lsr |= LSR_DR;
            UpdateInterrupt();
        }
        return queued;
    }

    public void Read(ulong offset, Span<byte> data)
    {
        if (data.Length != 1) { data.Fill(0xff); return; }
        lock (_lock)
        {
            data[0] = offset switch
            {
                RBR_THR when (_lcr & LCR_DLAB) != 0 => _dll,
                RBR_THR => ReadReceiver(),
                IER when (_lcr & LCR_DLAB) != 0 => _dlm,
                IER => _ier,
                IIR_FCR => ReadIir(),
                LCR => _lcr,
                MCR => _mcr,
                LSR => ReadLsr(),
                MSR => ReadMsr(),
                SCR => _scr,
                _ => 0xff,
            };
        }
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (data.Length != 1) return;
        byte v = data[0];
        lock (_lock)
        {
            switch (offset)
            {
                case RBR_THR when (_lcr & LCR_DLAB) != 0: _dll = v; break;
                case RBR_THR: Transmit(v); break;
                case IER when (_lcr & LCR_DLAB) != 0: _dlm = v; break;
                case IER:
                    // Enabling THRE interrupts with an empty transmitter raises one at once (16550 behaviour Linux relies on).
                    if ((v & IER_THRE) != 0 && (_ier & IER_THRE) == 0) _thrEmptyPending = true;
                    _ier = (byte)(v & 0x0f);
                    if ((_ier & IER_RDA) != 0) OpenReceiver();
                    break;
                case IIR_FCR:
                    _fifoEnabled = (v & 1) != 0;
                    if ((v & 2) != 0) { _rx.Clear(); _lsr &= unchecked((byte)~LSR_DR); }
                    break;
                case LCR: _lcr = v; break;
                case MCR: _mcr = (byte)(v & 0x1f); break;
                case SCR: _scr = v; break;
            }
            UpdateInterrupt();
        }
    }

    private void Transmit(byte v)
    {
        if ((_mcr & MCR_LOOP) != 0)
        {
            if (_rx.Count < FifoSize) { _rx.Enqueue(v); _lsr |= LSR_DR; }
        }
        else
        {
            _output([v]);
            Interlocked.Increment(ref _bytesOut);
        }
        _thrEmptyPending = true; // output is synchronous: the holding register is empty again at once
    }

    /// <summary>The guest is ready for input: release what the host typed before.</summary>
    private void OpenReceiver()
    {
        if (_receiverOpen) return;
        _receiverOpen = true;
        while (_held.Count > 0) _rx.Enqueue(_held.Dequeue());
        if (_rx.Count > 0) _lsr |= LSR_DR;
    }

    private byte ReadReceiver()
    {
        OpenReceiver();
        if (_rx.Count == 0) return 0;
        byte b = _rx.Dequeue();
        if (_rx.Count == 0) _lsr &= unchecked((byte)~LSR_DR);
        UpdateInterrupt();
        return b;
    }

    private byte ReadIir()
    {
        byte fifo = _fifoEnabled ? IIR_FIFO_ENABLED : (byte)0;
        if ((_ier & IER_RLS) != 0 && (_lsr & LSR_OE) != 0) return (byte)(0x06 | fifo);
        if ((_ier & IER_RDA) != 0 && (_lsr & LSR_DR) != 0) return (byte)(IIR_RDA | fifo);
        if ((_ier & IER_THRE) != 0 && _thrEmptyPending)
        {
            _thrEmptyPending = false; // reading IIR with THRE as the source clears it
            UpdateInterrupt();
            return (byte)(IIR_THRE | fifo);
        }
        return (byte)(IIR_NONE | fifo);
    }

    private byte ReadLsr()
    {
        byte v = _lsr;
        _lsr &= unchecked((byte)~LSR_OE);
        return v;
    }

    private byte ReadMsr()
    {
        if ((_mcr & MCR_LOOP) == 0) return _msr; // CTS, DSR, DCD asserted
        // Loopback: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD
        return (byte)(((_mcr & 1) << 5) | ((_mcr & 2) << 3) | ((_mcr & 4) << 4) | ((_mcr & 8) << 4));
    }

    private bool _lineHigh;
    private bool _paused;
    private readonly Queue<byte> _whilePaused = new(); // console input that arrived while paused

    /// <summary>Stops taking host input into the UART (it waits on the host side) so its state and IRQ stay still.</summary>
    public void Pause() { lock (_lock) _paused = true; }

    /// <summary>Delivers the input that arrived while paused, as if typed now.</summary>
    public void Resume()
    {
        byte[] pending;
        lock (_lock)
        {
            if (!_paused) return;
            _paused = false;
            pending = _whilePaused.ToArray();
            _whilePaused.Clear();
        }
        if (pending.Length > 0) EnqueueInput(pending);
    }

    // ---- state ----
    public string StateName => "serial0";
    public ushort StateVersion => Serial16550State.Version;

    public Serial16550State CaptureState()
    {
        lock (_lock)
            return new Serial16550State(_ier, _lcr, _mcr, _lsr, _msr, _scr, _dll, _dlm, _thrEmptyPending, _fifoEnabled, _receiverOpen, _rx.ToArray(), _held.ToArray());
    }

    public void SaveState(StateWriter writer) => CaptureState().Write(writer);

    /// <summary>Puts the registers and queues back and drives the interrupt line to match them.</summary>
    public void RestoreState(StateReader reader, ushort version)
    {
        var s = Serial16550State.Read(reader, version);
        lock (_lock)
        {
            (_ier, _lcr, _mcr, _lsr, _msr, _scr, _dll, _dlm) = (s.Ier, s.Lcr, s.Mcr, s.Lsr, s.Msr, s.Scr, s.Dll, s.Dlm);
            (_thrEmptyPending, _fifoEnabled, _receiverOpen) = (s.ThrEmptyPending, s.FifoEnabled, s.ReceiverOpen);
            _rx.Clear();
            foreach (byte b in s.Receive) _rx.Enqueue(b);
            _held.Clear();
            foreach (byte b in s.Held) _held.Enqueue(b);
            _lineHigh = false;
            UpdateInterrupt();
        }
    }

    private void UpdateInterrupt()
    {
        bool pending = ((_ier & IER_RDA) != 0 && (_lsr & LSR_DR) != 0)
            || ((_ier & IER_THRE) != 0 && _thrEmptyPending)
            || ((_ier & IER_RLS) != 0 && (_lsr & LSR_OE) != 0);
        if (pending == _lineHigh) return;
        _lineHigh = pending;
        _irq.SetLevel(pending);
    }
}
