using KvmPS.Devices;
using KvmPS.State;

namespace KvmPS.Acpi;

/// <summary>
/// The CPU hot-plug controller: an I/O register block the DSDT's CPU methods (<see cref="CpuHotplugAcpi"/>) use to
/// learn which possible vCPUs are present and which have an insert or remove event pending, and to acknowledge events
/// and eject a CPU. The VMM marks a CPU inserted or asks for its removal; either raises GPE
/// <see cref="CpuHotplugAcpi.Gpe"/>, whose handler runs the scan method.
/// <code>
/// offset 0, 32 bits, read/write  SELECT   the CPU (0 to maximum-1) the other registers refer to
/// offset 4,  8 bits, read        STATUS   bit 0 PRESENT, bit 1 INSERTING, bit 2 REMOVING, bit 3 EJECTED
/// offset 5,  8 bits, write       COMMAND  1 = acknowledge the insert event, 2 = acknowledge the remove event, 3 = eject
/// </code>
/// A SELECT beyond the maximum reads as no CPU (status 0) and commands for it do nothing: the guest cannot reach
/// outside the possible CPUs. Its state (SELECT and every CPU's STATUS) is the snapshot record <c>cpu-hotplug</c>.
/// </summary>
public sealed class CpuHotplugController : IBusDevice, IPersistent
{
    public const int Length = 8;
    public const int SelectOffset = 0, StatusOffset = 4, CommandOffset = 5;
    public const byte STATUS_PRESENT = 1 << 0, STATUS_INSERTING = 1 << 1, STATUS_REMOVING = 1 << 2, STATUS_EJECTED = 1 << 3;
    public const byte CMD_ACK_INSERT = 1, CMD_ACK_REMOVE = 2, CMD_EJECT = 3;

    private readonly object _lock = new();
    private readonly byte[] _status;
    private readonly IAcpiEvents _events;
    private uint _select;

    /// <summary>Called (outside the lock) when the guest ejects a CPU: the VMM parks that vCPU.</summary>
    public event Action<int>? Ejected;

    /// <param name="maxVcpus">Possible CPUs (the DSDT has one processor object each).</param>
    /// <param name="presentVcpus">CPUs 0 to presentVcpus-1 are present from the start.</param>
    public CpuHotplugController(int maxVcpus, int presentVcpus, IAcpiEvents events)
    {
        if (maxVcpus is < 1 or > CpuHotplugAcpi.MaxProcessors || presentVcpus < 1 || presentVcpus > maxVcpus)
            throw new ArgumentOutOfRangeException(nameof(presentVcpus), $"{presentVcpus} present of {maxVcpus} possible vCPUs is out of range (1 ≤ present ≤ maximum ≤ {CpuHotplugAcpi.MaxProcessors}).");
        _status = new byte[maxVcpus];
        for (int i = 0; i < presentVcpus; i++) _status[i] = STATUS_PRESENT;
        _events = events;
    }

    public string Name => "cpu-hotplug";
    public int MaxVcpus => _status.Length;

    /// <summary>The STATUS bits of CPU <paramref name="cpu"/>.</summary>
    public byte StatusOf(int cpu) { lock (_lock) return _status[CheckCpu(cpu)]; }

    /// <summary>Marks CPU <paramref name="cpu"/> present with an insert event and raises the GPE (its vCPU exists and waits for INIT/SIPI).</summary>
    public void Insert(int cpu)
    {
        lock (_lock)
        {
            CheckCpu(cpu);
            if ((_status[cpu] & STATUS_PRESENT) != 0) throw new InvalidOperationException($"CPU {cpu} is already present.");
            _status[cpu] = STATUS_PRESENT | STATUS_INSERTING;
        }
        _events.RaiseGpe(CpuHotplugAcpi.Gpe);
    }

    /// <summary>Asks the guest to release CPU <paramref name="cpu"/>: a remove event; the guest ejects it when it is done.</summary>
    public void RequestRemoval(int cpu)
    {
        lock (_lock)
        {
            CheckCpu(cpu);
            if (cpu == 0) throw new InvalidOperationException("CPU 0 is the boot CPU and cannot be removed.");
            if ((_status[cpu] & STATUS_PRESENT) == 0) throw new InvalidOperationException($"CPU {cpu} is not present.");
            _status[cpu] |= STATUS_REMOVING;
        }
        _events.RaiseGpe(CpuHotplugAcpi.Gpe);
    }

    // ---- state ----
    public string StateName => "cpu-hotplug";
    public ushort StateVersion => 1;
    private const byte StatusBits = STATUS_PRESENT | STATUS_INSERTING | STATUS_REMOVING | STATUS_EJECTED;

    /// <summary>Version 1: possible CPUs (u32), SELECT (u32), then one STATUS byte per possible CPU.</summary>
    public void SaveState(StateWriter writer)
    {
        lock (_lock)
        {
            writer.WriteUInt32((uint)_status.Length);
            writer.WriteUInt32(_select);
            foreach (byte b in _status) writer.WriteByte(b);
        }
    }

    /// <summary>Puts SELECT and the STATUS bits back; raises no event (a pending one is in the GPE status the PM block restores).</summary>
    public void RestoreState(StateReader reader, ushort version)
    {
        DeviceState.EnsureVersion(reader, version, StateVersion);
        uint max = reader.ReadUInt32();
        if (max != _status.Length) throw reader.Fail($"the snapshot has {max} possible CPUs, the machine {_status.Length} (max_vcpus differs)");
        uint select = reader.ReadUInt32();
        var status = new byte[_status.Length];
        for (int i = 0; i < status.Length; i++)
        {
            status[i] = reader.ReadByte();
            if ((status[i] & ~StatusBits) != 0) throw reader.Fail($"CPU {i} has status 0x{status[i]:x2}, which has bits the controller does not define");
        }
        if ((status[0] & STATUS_PRESENT) == 0) throw reader.Fail("CPU 0 (the boot CPU) is not present");
        reader.EnsureEnd();
        lock (_lock)
        {
            _select = select;
            status.CopyTo(_status, 0);
        }
    }

    private int CheckCpu(int cpu) => cpu >= 0 && cpu < _status.Length ? cpu
        : throw new ArgumentOutOfRangeException(nameof(cpu), $"CPU {cpu} is outside the possible CPUs (0-{_status.Length - 1}).");

    public void Read(ulong offset, Span<byte> data)
    {
        lock (_lock)
        {
            for (int i = 0; i < data.Length; i++)
            {
                ulong at = offset + (ulong)i;
                data[i] = at switch
                {
                    < 4 => (byte)(_select >> (8 * (int)at)),
                    StatusOffset => _select < _status.Length ? _status[_select] : (byte)0,
                    _ => 0,
                };
            }
        }
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        int ejected = -1;
        lock (_lock)
        {
            for (int i = 0; i < data.Length; i++)
            {
                ulong at = offset + (ulong)i;
                if (at < 4) _select = (_select & ~(0xFFu << (8 * (int)at))) | ((uint)data[i] << (8 * (int)at));
                else if (at == CommandOffset && _select < _status.Length) ejected = Command(data[i], (int)_select) ? (int)_select : ejected;
            }
        }
        if (ejected >= 0) Ejected?.Invoke(ejected);
    }

    /// <summary>Runs a command on the selected CPU; true when it ejected the CPU.</summary>
    private bool Command(byte command, int cpu)
    {
        ref byte s = ref _status[cpu];
        switch (command)
        {
            case CMD_ACK_INSERT: s &= unchecked((byte)~STATUS_INSERTING); return false;
            case CMD_ACK_REMOVE: s &= unchecked((byte)~STATUS_REMOVING); return false;
            case CMD_EJECT:
                // CPU 0 (the boot CPU) has no _EJ0 and cannot go; an absent CPU has nothing to eject.
                if (cpu == 0 || (s & STATUS_PRESENT) == 0) return false;
                s = STATUS_EJECTED;
                return true;
            default: return false; // unknown commands are ignored, as hardware would
        }
    }
}
