using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using KvmPS.Contract;
using KvmPS.Devices.Virtio;
using KvmPS.Devices.Virtio.Mem;
using KvmPS.State;
using KvmPS.Vm;
using KvmPS.Vm.Firmware;
using KvmPS.Vmm;
using static KvmPS.Devices.Virtio.Mem.VirtioMemBlocks;

namespace KvmPS.Engine.Tests.Devices;

/// <summary>
/// virtio-mem without KVM: the request checks of <see cref="VirtioMemBlocks"/> (every bad request is an error response
/// and changes nothing), the device through the PCI transport (configuration layout, plug/unplug, host memory given
/// back), memory.set limits, the state record, the region's place in the memory map, and the configuration flags.
/// </summary>
public sealed class VirtioMemTests : IDisposable
{
    private const ulong MiB = 1UL << 20, Block = 2 * MiB;
    private const ulong BootBytes = 16 * MiB, HotplugBytes = 32 * MiB;
    private readonly GuestMemory _mem = GuestMemory.Create(BootBytes, hotplugBytes: HotplugBytes);
    public void Dispose() => _mem.Dispose();

    private static byte[] Request(ushort type, ulong addr, ushort blocks, int length = RequestBytes)
    {
        var r = new byte[Math.Max(length, RequestBytes)];
        BinaryPrimitives.WriteUInt16LittleEndian(r, type);
        BinaryPrimitives.WriteUInt64LittleEndian(r.AsSpan(8), addr);
        BinaryPrimitives.WriteUInt16LittleEndian(r.AsSpan(16), blocks);
        return r[..length];
    }

    private static (VirtioMemBlocks Blocks, List<(ulong, ulong)> Discarded) NewBlocks(ulong address = 0x4000_0000, ulong bytes = 64 * Block)
    {
        var discarded = new List<(ulong, ulong)>();
        return (new VirtioMemBlocks(address, bytes, Block, (a, l) => discarded.Add((a, l))), discarded);
    }

    [Fact]
    public void PlugUnplugAndStateFollowTheSpec()
    {
        var (b, discarded) = NewBlocks();
        ulong at = b.RegionAddress;
        Assert.Equal((VIRTIO_MEM_RESP_NACK, (ushort)0), b.Handle(Request(VIRTIO_MEM_REQ_PLUG, at, 1))); // requested_size is 0
        b.RequestedBytes = 4 * Block;
        Assert.Equal(VIRTIO_MEM_RESP_ACK, b.Handle(Request(VIRTIO_MEM_REQ_PLUG, at + Block, 3)).Type);
        Assert.Equal(3 * Block, b.PluggedBytes);
        Assert.Equal(VIRTIO_MEM_RESP_NACK, b.Handle(Request(VIRTIO_MEM_REQ_PLUG, at + 8 * Block, 2)).Type); // 5 > 4 blocks
        Assert.Equal(VIRTIO_MEM_RESP_ACK, b.Handle(Request(VIRTIO_MEM_REQ_PLUG, at, 1)).Type);
        Assert.Equal((VIRTIO_MEM_RESP_ACK, VIRTIO_MEM_STATE_PLUGGED), b.Handle(Request(VIRTIO_MEM_REQ_STATE, at, 4)));
        Assert.Equal((VIRTIO_MEM_RESP_ACK, VIRTIO_MEM_STATE_MIXED), b.Handle(Request(VIRTIO_MEM_REQ_STATE, at, 5)));
        Assert.Equal((VIRTIO_MEM_RESP_ACK, VIRTIO_MEM_STATE_UNPLUGGED), b.Handle(Request(VIRTIO_MEM_REQ_STATE, at + 4 * Block, 60)));
        Assert.Empty(discarded);

        Assert.Equal(VIRTIO_MEM_RESP_ACK, b.Handle(Request(VIRTIO_MEM_REQ_UNPLUG, at + Block, 2)).Type);
        Assert.Equal([(at + Block, 2 * Block)], discarded);
        Assert.Equal(2 * Block, b.PluggedBytes);
        Assert.Equal(VIRTIO_MEM_RESP_ACK, b.Handle(Request(VIRTIO_MEM_REQ_UNPLUG_ALL, 0, 0)).Type);
        Assert.Equal(0UL, b.PluggedBytes);
        Assert.Equal([(at + Block, 2 * Block), (at, Block), (at + 3 * Block, Block)], discarded); // runs of plugged blocks
        Assert.Equal(0, b.ErrorResponses);
    }

    public static TheoryData<string, ushort, long, ushort> BadRequests() => new()
    {
        { "zero blocks", VIRTIO_MEM_REQ_PLUG, 0, 0 },
        { "unaligned", VIRTIO_MEM_REQ_PLUG, 4096, 1 },
        { "below the region", VIRTIO_MEM_REQ_PLUG, -(long)Block, 1 },
        { "past the end", VIRTIO_MEM_REQ_PLUG, 63 * (long)Block, 2 },
        { "far beyond", VIRTIO_MEM_REQ_STATE, 1L << 40, 1 },
        { "wrapping address", VIRTIO_MEM_REQ_UNPLUG, -0x4000_0000L - (long)Block, 0xFFFF },
        { "already plugged", VIRTIO_MEM_REQ_PLUG, 0, 1 },
        { "not plugged", VIRTIO_MEM_REQ_UNPLUG, (long)Block, 1 },
        { "partly plugged", VIRTIO_MEM_REQ_UNPLUG, 0, 2 },
        { "unknown type", 7, 0, 1 },
    };

    [Theory]
    [MemberData(nameof(BadRequests))]
    public void BadRequestsAreErrorsAndChangeNothing(string what, ushort type, long offset, ushort blocks)
    {
        var (b, discarded) = NewBlocks();
        b.RequestedBytes = 64 * Block;
        Assert.Equal(VIRTIO_MEM_RESP_ACK, b.Handle(Request(VIRTIO_MEM_REQ_PLUG, b.RegionAddress, 1)).Type); // block 0 plugged
        var before = b.CopyBitmap();
        var (response, _) = b.Handle(Request(type, unchecked(b.RegionAddress + (ulong)offset), blocks));
        Assert.True(response == VIRTIO_MEM_RESP_ERROR, $"{what}: response {response}");
        Assert.Equal(1, b.ErrorResponses);
        Assert.Equal(before, b.CopyBitmap());
        Assert.Empty(discarded);
        Assert.False(string.IsNullOrEmpty(b.LastError));
    }

    [Fact]
    public void ShortRequestsAreErrors()
    {
        var (b, _) = NewBlocks();
        b.RequestedBytes = Block;
        Assert.Equal(VIRTIO_MEM_RESP_ERROR, b.Handle(Request(VIRTIO_MEM_REQ_PLUG, b.RegionAddress, 1, length: 17)).Type);
        Assert.Equal(VIRTIO_MEM_RESP_ERROR, b.Handle([]).Type);
        Assert.Equal(0UL, b.PluggedBlocks);
    }

    [Fact]
    public void RandomRequestsNeverThrowAndKeepTheCountsTrue()
    {
        var rng = new Random(24);
        var (b, _) = NewBlocks(bytes: 100 * Block);
        for (int i = 0; i < 20000; i++)
        {
            if (i % 500 == 0) b.RequestedBytes = (ulong)rng.Next(0, 101) * Block;
            var req = new byte[rng.Next(0, 40)];
            rng.NextBytes(req);
            if (req.Length >= RequestBytes && rng.Next(3) > 0)
            {
                // Mostly plausible requests, so the plug/unplug paths get exercised, not only the range checks.
                BinaryPrimitives.WriteUInt16LittleEndian(req, (ushort)rng.Next(0, 5));
                BinaryPrimitives.WriteUInt64LittleEndian(req.AsSpan(8), b.RegionAddress + (ulong)rng.Next(-2, 102) * Block + (rng.Next(10) == 0 ? 4096UL : 0));
                BinaryPrimitives.WriteUInt16LittleEndian(req.AsSpan(16), (ushort)rng.Next(0, 8));
            }
            var response = new byte[ResponseBytes];
            b.Handle(req, response);
            Assert.InRange(BinaryPrimitives.ReadUInt16LittleEndian(response), VIRTIO_MEM_RESP_ACK, VIRTIO_MEM_RESP_ERROR);
            ulong count = 0;
            for (ulong k = 0; k < b.BlockCount; k++) if (b.IsPlugged(k)) count++;
            Assert.Equal(count, b.PluggedBlocks);
        }
    }

    // ---- the device behind the transport ----

    private (VirtioPciTransport T, TestDriver D, VirtioMem M, TestRing Ring, List<string> Log) Start()
    {
        var log = new List<string>();
        var m = new VirtioMem(_mem, log: log.Add);
        var t = new VirtioPciTransport(m, _mem) { ErrorLog = log.Add };
        var d = new TestDriver(t);
        Assert.True(d.Negotiate(0));
        var ring = new TestRing(_mem, 16, 0x10000);
        d.SetupQueue(0, ring);
        d.DriverOk();
        return (t, d, m, ring, log);
    }

    private ulong Config(TestDriver d, int offset) => d.Read(VirtioPciTransport.DeviceCfgOffset + (ulong)offset, 4) | d.Read(VirtioPciTransport.DeviceCfgOffset + (ulong)offset + 4, 4) << 32;

    /// <summary>Posts a request chain (request readable at 0x20000, response writable at 0x20100) and returns the response type and used length.</summary>
    private (ushort Type, ushort State, uint Used) Send(TestDriver d, TestRing ring, byte[] request, uint responseBytes = ResponseBytes)
    {
        _mem.Write(0x20000, request);
        _mem.Fill(0x20100, 16, 0xEE);
        ring.SetDesc(0, 0x20000, (uint)request.Length, VirtQueue.DescFlagNext, 1);
        ring.SetDesc(1, 0x20100, responseBytes, VirtQueue.DescFlagWrite);
        ushort before = ring.UsedIdx;
        ring.Offer(0);
        d.Notify(0);
        Assert.Equal((ushort)(before + 1), ring.UsedIdx);
        return (_mem.ReadUInt16(0x20100), _mem.ReadUInt16(0x20108), ring.UsedElem(before).Len);
    }

    [DllImport("libc", SetLastError = true)]
    private static extern unsafe int mincore(nint addr, nuint length, byte* vec);

    private unsafe bool Resident(ulong gpa)
    {
        var r = _mem.FindRegion(gpa)!;
        byte v;
        Assert.Equal(0, mincore(r.HostAddress + (nint)(gpa - r.GuestAddress), 4096, &v));
        return (v & 1) != 0;
    }

    [Fact]
    public void ConfigurationLayoutAndPlugThroughTheQueue()
    {
        var (t, d, m, ring, log) = Start();
        using var _t = t;
        var region = _mem.HotplugRegion!;
        Assert.Equal(0UL, d.DeviceFeatures() & (VirtioMem.VIRTIO_MEM_F_ACPI_PXM | VirtioMem.VIRTIO_MEM_F_UNPLUGGED_INACCESSIBLE)); // neither ACPI_PXM nor UNPLUGGED_INACCESSIBLE
        Assert.Equal(Block, Config(d, 0));
        Assert.Equal(0UL, Config(d, 8)); // node_id + padding
        Assert.Equal(region.GuestAddress, Config(d, 16));
        Assert.Equal(HotplugBytes, Config(d, 24));
        Assert.Equal(HotplugBytes, Config(d, 32));
        Assert.Equal(0UL, Config(d, 40));
        Assert.Equal(0UL, Config(d, 48));

        m.SetTotalMemory((long)(BootBytes + 4 * Block));
        Assert.Equal(4 * Block, Config(d, 48));
        Assert.Equal((VIRTIO_MEM_RESP_ACK, (ushort)0, (uint)ResponseBytes), Send(d, ring, Request(VIRTIO_MEM_REQ_PLUG, region.GuestAddress, 4)));
        Assert.Equal(4 * Block, Config(d, 40));
        ulong page = region.GuestAddress + Block + 8192;
        _mem.WriteUInt64(page, 0x1122334455667788);
        Assert.True(Resident(page));

        m.SetTotalMemory((long)BootBytes);
        Assert.Equal(VIRTIO_MEM_RESP_ACK, Send(d, ring, Request(VIRTIO_MEM_REQ_UNPLUG, region.GuestAddress, 4)).Type);
        Assert.Equal(0UL, Config(d, 40));
        Assert.False(Resident(page)); // given back to the host
        Assert.Equal(0UL, _mem.ReadUInt64(page));
        Assert.Equal(0, d.Status & VirtioStatus.NeedsReset);
        Assert.Empty(log);
    }

    [Fact]
    public void MalformedChainsAreAnsweredOrReturnedWithoutBreakingTheDevice()
    {
        var (t, d, m, ring, log) = Start();
        using var _t = t;
        m.SetTotalMemory((long)(BootBytes + HotplugBytes));
        var region = _mem.HotplugRegion!;
        Assert.Equal(VIRTIO_MEM_RESP_ERROR, Send(d, ring, Request(VIRTIO_MEM_REQ_PLUG, region.GuestAddress, 1, length: 8)).Type);
        Assert.Equal(VIRTIO_MEM_RESP_ERROR, Send(d, ring, Request(VIRTIO_MEM_REQ_PLUG, region.GuestAddress - Block, 1)).Type);
        Assert.Equal(VIRTIO_MEM_RESP_ERROR, Send(d, ring, Request(VIRTIO_MEM_REQ_PLUG, 0, 1)).Type); // boot RAM is not the device's
        var (_, _, used) = Send(d, ring, Request(VIRTIO_MEM_REQ_PLUG, region.GuestAddress, 1), responseBytes: 4);
        Assert.Equal(0u, used); // no room for a response: returned unanswered, nothing plugged
        Assert.Equal(0UL, m.PluggedBytes);
        Assert.Equal(3, m.ErrorResponses);
        Assert.Equal(0, d.Status & VirtioStatus.NeedsReset);
        Assert.Contains(log, l => l.Contains("outside the region"));
        Assert.Equal(VIRTIO_MEM_RESP_ACK, Send(d, ring, Request(VIRTIO_MEM_REQ_PLUG, region.GuestAddress, 1)).Type); // still works
    }

    [Fact]
    public void MemorySetRefusesValuesOutsideTheLimitsAndChangesNothing()
    {
        using var m = new VirtioMem(_mem);
        m.SetTotalMemory((long)(BootBytes + 2 * Block));
        var below = Assert.Throws<ArgumentException>(() => m.SetTotalMemory((long)BootBytes - 4096));
        Assert.Contains($"boot memory of {BootBytes} bytes", below.Message);
        var above = Assert.Throws<ArgumentException>(() => m.SetTotalMemory((long)(BootBytes + HotplugBytes + Block)));
        Assert.Contains($"maximum of {BootBytes + HotplugBytes} bytes", above.Message);
        var odd = Assert.Throws<ArgumentException>(() => m.SetTotalMemory((long)(BootBytes + Block + 4096)));
        Assert.Contains("block size", odd.Message);
        Assert.Equal(2 * Block, m.RequestedBytes);
        var reply = m.StateReply();
        Assert.Equal((long)(BootBytes + HotplugBytes), reply.MaximumBytes);
        Assert.Equal((long)(BootBytes + 2 * Block), reply.RequestedBytes);
    }

    [Fact]
    public void StateRoundTripsAndBadRecordsAreRefused()
    {
        var (t, d, m, ring, _) = Start();
        using var _t = t;
        m.SetTotalMemory((long)(BootBytes + 6 * Block));
        var region = _mem.HotplugRegion!;
        Send(d, ring, Request(VIRTIO_MEM_REQ_PLUG, region.GuestAddress + 2 * Block, 3));
        var w = new StateWriter();
        m.SaveState(w);
        byte[] record = w.ToArray();

        using var copy = new VirtioMem(_mem);
        copy.RestoreState(new StateReader(record, copy.StateName), copy.StateVersion);
        Assert.Equal(3 * Block, copy.PluggedBytes);
        Assert.Equal(6 * Block, copy.RequestedBytes);
        Assert.Equal(m.CaptureState().PluggedBitmap, copy.CaptureState().PluggedBitmap);

        var s = m.CaptureState();
        byte[] Write(VirtioMemState state) { var sw = new StateWriter(); state.Write(sw); return sw.ToArray(); }
        void Refused(byte[] bytes, string text)
        {
            using var target = new VirtioMem(_mem);
            var e = Assert.Throws<StateFormatException>(() => target.RestoreState(new StateReader(bytes, target.StateName), target.StateVersion));
            Assert.Contains(text, e.Message);
            Assert.Equal(0UL, target.PluggedBytes);
        }
        Refused(Write(s with { RegionAddress = s.RegionAddress + Block }), "does not match");
        Refused(Write(s with { RequestedBytes = HotplugBytes + Block }), "requested size");
        Refused(Write(s with { PluggedBitmap = [ulong.MaxValue] }), "beyond");
        Refused(Write(s with { PluggedBitmap = [0, 0] }), "words");
        Refused(record[..^3], "virtio-mem");
    }

    [Fact]
    public void TheRegionIsNotRamInTheMemoryMapAndStaysBelowThePciWindow()
    {
        var region = _mem.HotplugRegion!;
        Assert.Equal(128 * MiB, region.GuestAddress); // after 16 MiB of boot RAM, at the next 128 MiB boundary
        Assert.Equal(BootBytes, _mem.BootRamBytes);
        Assert.Equal(BootBytes + HotplugBytes, _mem.SizeBytes);
        Assert.DoesNotContain(E820Map.For(_mem), e => e.Type == E820Type.Ram && e.Address < region.EndAddress && region.GuestAddress < e.End);

        // Too big for the low 3 GiB: above 4 GiB (and above the RAM there), with the 64-bit PCI window after it.
        ulong start = MemoryLayout.HotplugRegionStart(3UL << 30, 8UL << 30);
        Assert.Equal(4UL << 30, start);
        Assert.Equal(12UL << 30, MemoryLayout.PciMmio64Base(3UL << 30, 8UL << 30));
        Assert.Equal(6UL << 30, MemoryLayout.HotplugRegionStart(5UL << 30, 1UL << 30)); // 2 GiB at 4 GiB, then a 1 GiB boundary
        Assert.Equal(1280 * MiB, MemoryLayout.HotplugRegionStart(1200 * MiB, 512 * MiB));
    }

    [Fact]
    public void MaxMemoryFlagAddsTheDeviceAndRoundTrips()
    {
        var c = VmmConfig.FromArgs(["--memory", "256M", "--max-memory", "512M", "--rng", "on"]);
        Assert.Equal(512 * MiB, c.Machine.MemoryMaximumBytes);
        Assert.Equal(256 * MiB, c.Machine.HotplugMemoryBytes);
        Assert.Single(c.Machine.Devices.OfType<MemDeviceConfig>());
        Assert.Equal((long)(512 * MiB), c.Configuration.MemoryMaximumBytes);
        string json = Encoding.UTF8.GetString(ContractJson.WriteConfiguration(c.Configuration));
        Assert.Contains("\"memory_maximum_bytes\": 536870912", json);
        var again = VmmConfig.FromJson(json, "again.json");
        Assert.Single(again.Machine.Devices.OfType<MemDeviceConfig>()); // the written device, not a second one
        Assert.Equal(json, Encoding.UTF8.GetString(ContractJson.WriteConfiguration(again.Configuration)));

        Assert.Empty(VmmConfig.FromArgs(["--memory", "256M"]).Machine.Devices.OfType<MemDeviceConfig>());
        Assert.Contains("--max-memory", Assert.Throws<VmmConfigException>(() => VmmConfig.FromArgs(["--memory", "256M", "--max-memory", "128M"])).Message);
        Assert.Contains("block size", Assert.Throws<VmmConfigException>(() => VmmConfig.FromArgs(["--memory", "256M", "--max-memory", "257M"])).Message);
        Assert.Contains("needs memory_maximum_bytes", Assert.Throws<VmmConfigException>(() => VmmConfig.FromArgs(["--memory", "256M", "--device", "mem"])).Message);
        Assert.Contains("power of two", Assert.Throws<VmmConfigException>(() => VmmConfig.FromArgs(["--memory", "256M", "--max-memory", "512M", "--device", "mem,block_size_bytes=3145728"])).Message);
        // Firmware boot: a region that would cross SeaBIOS's MMCONFIG window (0xb0000000) goes above 4 GiB instead.
        var firmware = VmmConfig.FromArgs(["--firmware", "seabios", "--memory", "1G", "--max-memory", "3G"]).Machine;
        Assert.Equal(4UL << 30, MemoryLayout.HotplugRegionStart(firmware.MemoryBytes, firmware.HotplugMemoryBytes, firmware.HotplugLowLimit));
        Assert.Equal(1UL << 30, MemoryLayout.HotplugRegionStart(1UL << 30, 1UL << 30)); // without firmware it fits below 3 GiB
        Assert.Equal(4UL << 30, VmmConfig.FromArgs(["--firmware", "seabios", "--memory", "1G", "--max-memory", "5G"]).Machine.MemoryMaximumBytes - (1UL << 30)); // region above 4 GiB
                var big = VmmConfig.FromArgs(["--memory", "256M", "--max-memory", "512M", "--device", "mem,block_size_bytes=4194304"]);
        Assert.Equal(4 * MiB, big.Machine.Devices.OfType<MemDeviceConfig>().Single().BlockSizeBytes);
    }
}
