using System.Buffers.Binary;
using KvmPS.Devices.Pci;
using static KvmPS.Interop.Vfio;

namespace KvmPS.Devices.Passthrough;

/// <summary>
/// Config space of a passthrough function: the type-0 header (0x00-0x3F) is the base class's virtual copy (ids and
/// class from the device, BARs, ROM BAR and command register emulated); the capability area and extended space are
/// the device's own, read and written through the transport, except what is virtualized here: the MSI-X message
/// control (enable, function mask: the table is emulated), the MSI capability's registers (all emulated, as
/// <see cref="MsiCapability"/>; the device learns of MSI through SET_IRQS), and next pointers that skip what is
/// hidden (a second MSI capability, one that does not fit, MSI the device has no IRQ index for) or end a list that loops.
/// </summary>
public sealed partial class PassthroughDevice
{
    public const byte CapIdMsi = 0x05;
    public const int ExtendedConfigSize = 4096;
    private const int HeaderEnd = 0x40;

    /// <summary>Bytes the guest sees instead of the device's (next pointers around hidden capabilities, the cap pointer).</summary>
    private readonly Dictionary<int, byte> _configOverrides = [];
    /// <summary>Capability ranges whose writes are dropped (hidden capabilities).</summary>
    private readonly List<(int Start, int End)> _hiddenRanges = [];
    private int _msixCap = -1, _msiCap = -1;
    private int _configBytes = ConfigSize;
    private bool _goneLogged;

    /// <summary>
    /// Walks the device's capability list in <paramref name="config"/>: finds MSI-X and MSI, hides what cannot be
    /// virtualized (MSI too when <paramref name="msiVectorsOf"/>, asked only when there is an MSI capability, says the
    /// device signals no MSI vector), rewires next pointers. Returns how many MSI vectors the device signals.
    /// </summary>
    private int ScanCapabilities(byte[] config, Func<int> msiVectorsOf)
    {
        int msiVectors = 0;
        if ((BinaryPrimitives.ReadUInt16LittleEndian(config.AsSpan(0x06)) & StatusCapList) == 0) return msiVectors;
        var kept = new List<int>();
        var seen = new HashSet<int>();
        for (int at = config[0x34] & 0xFC; at >= HeaderEnd && at < ConfigSize - 1 && seen.Add(at); at = config[at + 1] & 0xFC)
        {
            byte id = config[at];
            if (id == CapIdMsi)
            {
                bool is64 = (config[at + 2] & 0x80) != 0, masking = (config[at + 3] & 0x01) != 0;
                int end = at + 10 + (is64 ? 4 : 0) + (masking ? 10 : 0);
                if (_msiCap >= 0 || end > ConfigSize || (msiVectors = msiVectorsOf()) == 0)
                {
                    // A second one, one past the end, or MSI the device cannot signal: the guest must not reach the device's own.
                    _hiddenRanges.Add((at, Math.Min(end, ConfigSize)));
                    continue;
                }
                _msiCap = at;
            }
            if (id == CapIdMsiX && _msixCap < 0) _msixCap = at;
            kept.Add(at);
        }
        // The header's cap pointer and each kept capability's next pointer, as the guest must see them.
        Set8(0x34, (byte)(kept.Count > 0 ? kept[0] : 0));
        Set16(0x06, (ushort)(kept.Count > 0 ? Get16(0x06) | StatusCapList : Get16(0x06) & ~StatusCapList));
        for (int i = 0; i < kept.Count; i++)
        {
            byte next = (byte)(i + 1 < kept.Count ? kept[i + 1] : 0);
            if (config[kept[i] + 1] != next) _configOverrides[kept[i] + 1] = next;
        }
        return msiVectors;
    }

    public override void ConfigRead(int offset, Span<byte> data)
    {
        lock (SyncRoot)
        {
            if (Gone()) { data.Fill(0xFF); return; }
            int headerBytes = Math.Clamp(HeaderEnd - offset, 0, data.Length);
            if (headerBytes > 0) base.ConfigRead(offset, data[..headerBytes]);
            if (headerBytes == data.Length) return;
            int start = offset + headerBytes;
            var rest = data[headerBytes..];
            if (start >= _configBytes) { rest.Clear(); return; } // extended space of a conventional function: nothing there
            try { _transport.RegionRead(VFIO_PCI_CONFIG_REGION_INDEX, (ulong)start, rest); }
            catch (PassthroughException e)
            {
                rest.Fill(0xFF); // a device that is gone reads as all-ones, as on a real bus
                Log($"{Name}: config read at 0x{start:x}: {e.Message}");
                return;
            }
            for (int i = 0; i < rest.Length; i++)
            {
                int o = start + i;
                if (_configOverrides.TryGetValue(o, out byte v)) rest[i] = v;
                else if (_msiCap >= 0 && o >= _msiCap + 2 && o < _msiCap + _msi!.Size) rest[i] = _msi.ReadByte(o - _msiCap);
                else if (_msixCap >= 0 && o == _msixCap + 3) rest[i] = (byte)((rest[i] & 0x3F) | (_msix!.Enabled ? 0x80 : 0) | (_msix.FunctionMasked ? 0x40 : 0));
            }
        }
    }

    public override void ConfigWrite(int offset, ReadOnlySpan<byte> data)
    {
        lock (SyncRoot)
        {
            if (Gone()) return;
            int headerBytes = Math.Clamp(HeaderEnd - offset, 0, data.Length);
            if (headerBytes > 0) base.ConfigWrite(offset, data[..headerBytes]);
            if (headerBytes == data.Length) return;
            int start = offset + headerBytes;
            var rest = data[headerBytes..];
            if (start >= _configBytes) return;
            // MSI-X message control (its high byte: enable, function mask) is ours; a write elsewhere goes to the device.
            if (_msixCap >= 0 && start <= _msixCap + 3 && start + rest.Length > _msixCap + 3)
            {
                try { SetMsiXControl(rest[_msixCap + 3 - start]); }
                catch (Exception e) { Log($"{Name}: MSI-X control write: {e.Message}"); } // e.g. no GSI left for a route
            }
            // The MSI capability's registers are ours alone.
            if (_msiCap >= 0 && start < _msiCap + _msi!.Size && start + rest.Length > _msiCap + 2)
            {
                try { SetMsi(start - _msiCap, rest); }
                catch (Exception e) { Log($"{Name}: MSI write: {e.Message}"); }
            }
            int runStart = -1;
            for (int i = 0; i <= rest.Length; i++)
            {
                int o = start + i;
                bool forward = i < rest.Length && !_configOverrides.ContainsKey(o) && !(_msixCap >= 0 && o >= _msixCap + 2 && o <= _msixCap + 3)
                    && !(_msiCap >= 0 && o >= _msiCap + 2 && o < _msiCap + _msi!.Size)
                    && !_hiddenRanges.Any(r => o >= r.Start && o < r.End);
                if (forward && runStart < 0) runStart = i;
                if (!forward && runStart >= 0)
                {
                    ForwardConfigWrite(start + runStart, rest[runStart..i]);
                    runStart = -1;
                }
            }
        }
    }

    /// <summary>
    /// True once the transport has failed: from then on the function reads as all-ones everywhere, its config space
    /// header included, and drops writes, like a device removed by surprise (a guest's driver and its PCI scan see
    /// it gone). Said once in the log instead of once per access.
    /// </summary>
    private bool Gone()
    {
        if (_transport.Failed is not { } reason) return false;
        if (!_goneLogged)
        {
            _goneLogged = true;
            Log($"{Name}: the device failed ({reason}); it reads as all-ones and ignores writes from now on");
            RemoveSlots(); // mapped BAR areas would still show the device's last memory: they trap (all-ones) instead

        }
        return true;
    }

    private void ForwardConfigWrite(int offset, ReadOnlySpan<byte> data)
    {
        try { _transport.RegionWrite(VFIO_PCI_CONFIG_REGION_INDEX, (ulong)offset, data); }
        catch (PassthroughException e) { Log($"{Name}: config write at 0x{offset:x}: {e.Message}"); }
    }

    /// <summary>The command register is emulated, and the device gets it too: it gates its own decoding and bus mastering (DMA).</summary>
    protected override void OnConfigWrite(int offset, int length)
    {
        if (offset <= 0x05 && offset + length > 0x04)
        {
            Span<byte> command = stackalloc byte[2];
            BinaryPrimitives.WriteUInt16LittleEndian(command, (ushort)(Command & (CommandIo | CommandMemory | CommandBusMaster | CommandIntxDisable)));
            ForwardConfigWrite(0x04, command);
        }
    }
}
