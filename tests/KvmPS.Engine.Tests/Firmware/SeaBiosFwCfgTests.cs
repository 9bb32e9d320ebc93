using System.Buffers.Binary;
using System.Text;
using KvmPS.Acpi;
using KvmPS.Devices;
using KvmPS.Devices.Legacy;
using KvmPS.Vm;
using KvmPS.Vm.Boot;
using KvmPS.Vm.Firmware;
using KvmPS.Vmm;

namespace KvmPS.Engine.Tests.Firmware;

/// <summary>The fw_cfg device (selector/data, directory, DMA) and the firmware-boot fw_cfg contents, without KVM.</summary>
public sealed class SeaBiosFwCfgTests : IDisposable
{
    private const ulong MiB = 1UL << 20;
    private readonly GuestMemory _memory = GuestMemory.Create(16 * MiB);

    public void Dispose() => _memory.Dispose();

    private static void Select(FwCfg fw, ushort key) => fw.Write(0, FwCfg.Le16(key));

    private static byte[] ReadData(FwCfg fw, int count)
    {
        var result = new byte[count];
        for (int i = 0; i < count; i++) fw.Read(1, result.AsSpan(i, 1));
        return result;
    }

    private static byte[] ReadItem(FwCfg fw, ushort key, int count) { Select(fw, key); return ReadData(fw, count); }

    /// <summary>Writes the DMA address register the way SeaBIOS does: high half at 0x514, low half at 0x518 (big-endian).</summary>
    private static void StartDma(FwCfg fw, ulong access)
    {
        var b = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(b, (uint)(access >> 32));
        fw.Write(4, b);
        BinaryPrimitives.WriteUInt32BigEndian(b, (uint)access);
        fw.Write(8, b);
    }

    private void WriteAccess(ulong at, uint control, uint length, ulong address)
    {
        var s = _memory.GetWritableSpan(at, 16);
        BinaryPrimitives.WriteUInt32BigEndian(s, control);
        BinaryPrimitives.WriteUInt32BigEndian(s[4..], length);
        BinaryPrimitives.WriteUInt64BigEndian(s[8..], address);
    }

    private uint Control(ulong at) => BinaryPrimitives.ReadUInt32BigEndian(_memory.GetReadOnlySpan(at, 4));

    [Fact]
    public void SignatureAndIdThroughSelectorAndDataPort()
    {
        var fw = new FwCfg(_memory);
        Assert.Equal("QEMU"u8.ToArray(), ReadItem(fw, FwCfg.KeySignature, 4));
        Assert.Equal(FwCfg.FeatureTraditional | FwCfg.FeatureDma, BinaryPrimitives.ReadUInt32LittleEndian(ReadItem(fw, FwCfg.KeyId, 4)));
        var noDma = new FwCfg(null);
        Assert.Equal(FwCfg.FeatureTraditional, BinaryPrimitives.ReadUInt32LittleEndian(ReadItem(noDma, FwCfg.KeyId, 4)));
    }

    [Fact]
    public void UnknownKeysAndReadsPastTheEndAreZero()
    {
        var fw = new FwCfg(_memory);
        Assert.Equal(new byte[8], ReadItem(fw, 0x1234, 8));
        Assert.Equal([.. "QEMU"u8, 0, 0], ReadItem(fw, FwCfg.KeySignature, 6));
        // Reselecting restarts at offset 0; wider reads continue the same stream.
        Select(fw, FwCfg.KeySignature);
        var two = new byte[2];
        fw.Read(1, two);
        Assert.Equal("QE"u8.ToArray(), two);
        fw.Read(1, two);
        Assert.Equal("MU"u8.ToArray(), two);
    }

    [Fact]
    public void DmaRegisterReadsQemuCfgSignature()
    {
        var fw = new FwCfg(_memory);
        var b = new byte[4];
        fw.Read(4, b);
        Assert.Equal("QEMU"u8.ToArray(), b);
        fw.Read(8, b);
        Assert.Equal(" CFG"u8.ToArray(), b);
    }

    [Fact]
    public void FileDirectoryListsFilesWithBigEndianSizeAndSelector()
    {
        var fw = new FwCfg(_memory);
        ushort a = fw.AddFile("etc/first", [1, 2, 3]);
        ushort b = fw.AddFile("bootorder", "/pci@i0cf8/*@1\n"u8.ToArray());
        Assert.Equal(FwCfg.KeyFileFirst, a);
        Assert.Equal(FwCfg.KeyFileFirst + 1, b);
        var dir = ReadItem(fw, FwCfg.KeyFileDir, 4 + 2 * 64);
        Assert.Equal(2u, BinaryPrimitives.ReadUInt32BigEndian(dir));
        Assert.Equal(3u, BinaryPrimitives.ReadUInt32BigEndian(dir.AsSpan(4)));
        Assert.Equal(a, BinaryPrimitives.ReadUInt16BigEndian(dir.AsSpan(8)));
        Assert.Equal("etc/first", Encoding.ASCII.GetString(dir, 12, 56).TrimEnd('\0'));
        Assert.Equal(15u, BinaryPrimitives.ReadUInt32BigEndian(dir.AsSpan(68)));
        Assert.Equal("bootorder", Encoding.ASCII.GetString(dir, 76, 56).TrimEnd('\0'));
        Assert.Equal(new byte[] { 1, 2, 3 }, ReadItem(fw, a, 3));
        // Replacing a file keeps its key and updates the size in the directory.
        Assert.Equal(a, fw.AddFile("etc/first", [9]));
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32BigEndian(ReadItem(fw, FwCfg.KeyFileDir, 8).AsSpan(4)));
        Assert.Throws<ArgumentException>(() => fw.AddFile(new string('x', 56), []));
        Assert.Throws<ArgumentOutOfRangeException>(() => fw.SetItem(FwCfg.KeyFileDir, []));
    }

    [Fact]
    public void DmaSelectReadAndSkip()
    {
        var fw = new FwCfg(_memory);
        ushort key = fw.AddFile("etc/blob", Enumerable.Range(0, 100).Select(i => (byte)i).ToArray());
        const ulong access = 0x1000, buffer = 0x2000;
        WriteAccess(access, ((uint)key << 16) | FwCfg.DmaSelect | FwCfg.DmaRead, 10, buffer);
        StartDma(fw, access);
        Assert.Equal(0u, Control(access));
        Assert.Equal(Enumerable.Range(0, 10).Select(i => (byte)i).ToArray(), _memory.GetReadOnlySpan(buffer, 10).ToArray());
        // Skip 20, then read 5 more: bytes 30-34.
        WriteAccess(access, FwCfg.DmaSkip, 20, 0);
        StartDma(fw, access);
        Assert.Equal(0u, Control(access));
        WriteAccess(access, FwCfg.DmaRead, 5, buffer);
        StartDma(fw, access);
        Assert.Equal(new byte[] { 30, 31, 32, 33, 34 }, _memory.GetReadOnlySpan(buffer, 5).ToArray());
        // A read past the end fills with zeros.
        _memory.Fill(buffer, 64, 0xAA);
        WriteAccess(access, FwCfg.DmaSkip | FwCfg.DmaSelect | ((uint)key << 16), 90, 0);
        StartDma(fw, access);
        WriteAccess(access, FwCfg.DmaRead, 64, buffer);
        StartDma(fw, access);
        Assert.Equal(0u, Control(access));
        Assert.Equal(Enumerable.Range(90, 10).Select(i => (byte)i).Concat(new byte[54]).ToArray(), _memory.GetReadOnlySpan(buffer, 64).ToArray());
        Assert.Equal(5, fw.DmaTransfers);
        Assert.Equal(0, fw.DmaErrors);
    }

    [Fact]
    public void AHugeSkipThenDataPortReadsStayZeroAndNeverThrow()
    {
        // A guest skips 4 GiB - 1 (the offset saturates), then keeps reading the data port: it must read zeros,
        // not wrap the offset negative and index outside the item.
        var fw = new FwCfg(_memory);
        ushort key = fw.AddFile("etc/blob", new byte[16]);
        const ulong access = 0x1000;
        WriteAccess(access, ((uint)key << 16) | FwCfg.DmaSelect | FwCfg.DmaSkip, uint.MaxValue, 0);
        StartDma(fw, access);
        var data = new byte[1];
        for (int i = 0; i < 3; i++)
        {
            fw.Read(1, data);
            Assert.Equal(0, data[0]);
        }
    }

    [Fact]
    public void BadDmaRequestsNeverThrowAndSetTheErrorBit()
    {
        var fw = new FwCfg(_memory);
        ushort key = fw.AddFile("etc/blob", new byte[4096]);
        const ulong access = 0x1000;
        // Control structure outside guest RAM (and straddling the end of RAM): ignored.
        StartDma(fw, 0xFFFF_FFF0);
        StartDma(fw, 16 * MiB - 8);
        StartDma(fw, ulong.MaxValue - 4);
        Assert.Equal(3, fw.DmaErrors);
        // Buffer outside RAM, buffer wrapping around, huge length running off the end of RAM, writes.
        foreach (var (control, length, address) in new (uint, uint, ulong)[]
                 {
                     (FwCfg.DmaRead | FwCfg.DmaSelect | ((uint)key << 16), 16, 0x1_0000_0000_0000),
                     (FwCfg.DmaRead, 16, ulong.MaxValue - 7),
                     (FwCfg.DmaRead, uint.MaxValue, 16 * MiB - 4096),
                     (FwCfg.DmaWrite, 4, 0x3000),
                 })
        {
            WriteAccess(access, control, length, address);
            StartDma(fw, access);
            Assert.Equal(FwCfg.DmaError, Control(access));
        }
        // A bare low-half write without a high half, partial writes and odd widths are harmless.
        fw.Write(8, new byte[2]);
        fw.Write(5, new byte[1]);
        fw.Write(1, new byte[] { 0x55 });
        Assert.Equal("QEMU"u8.ToArray(), ReadItem(fw, FwCfg.KeySignature, 4));
    }

    [Fact]
    public void MachineItemsAndFiles()
    {
        var config = new MachineConfig { MemoryBytes = 16 * MiB, VcpuCount = 2, MaxVcpus = 4 };
        var fw = FirmwareLoader.Build(config, _memory, new AcpiConfig(2, 4));
        Assert.Equal(16 * MiB, BinaryPrimitives.ReadUInt64LittleEndian(ReadItem(fw, FwCfg.KeyRamSize, 8)));
        Assert.Equal(2, BinaryPrimitives.ReadUInt16LittleEndian(ReadItem(fw, FwCfg.KeyNbCpus, 2)));
        Assert.Equal(4, BinaryPrimitives.ReadUInt16LittleEndian(ReadItem(fw, FwCfg.KeyMaxCpus, 2)));
        Assert.Equal(new byte[] { 2, 0 }, fw.GetFile("etc/boot-cpus"));
        Assert.Equal(new byte[] { 0xF8, 0x03 }, fw.GetFile("etc/sercon-port"));
        Assert.Null(fw.GetFile("bootorder")); // no block device
        var e820 = fw.GetFile("etc/e820")!;
        Assert.Equal(0, e820.Length % 20);
        var entries = Enumerable.Range(0, e820.Length / 20).Select(i => (
            Address: BinaryPrimitives.ReadUInt64LittleEndian(e820.AsSpan(20 * i)),
            Length: BinaryPrimitives.ReadUInt64LittleEndian(e820.AsSpan(20 * i + 8)),
            Type: BinaryPrimitives.ReadUInt32LittleEndian(e820.AsSpan(20 * i + 16)))).ToList();
        Assert.Equal((0UL, 16 * MiB, 1u), entries[0]);
        Assert.Contains((MemoryLayout.PciEcamBase, MemoryLayout.PciEcamSize, 2u), entries);
        Assert.Contains((MemoryLayout.KvmIdentityMapAddress, 0x4000UL, 2u), entries);
        Assert.Null(FirmwareLoader.Build(config with { FirmwareSerialConsole = false }, _memory, new AcpiConfig(2, 4)).GetFile("etc/sercon-port"));
    }

    [Fact]
    public void TableLoaderRelocatesTheAcpiTables()
    {
        var placed = AcpiTables.Build(new AcpiConfig(1, 2) { ExtraTables = [new AcpiTableWriter("MCFG", 1).U64(0).U64(0xE000_0000).Finish()] });
        var (tables, rsdp, loader) = FirmwareLoader.AcpiLoaderFiles(placed);
        Assert.Equal(0, loader.Length % 128);
        var files = new Dictionary<string, (byte[] Data, ulong Address)>
        {
            [FirmwareLoader.TablesFile] = ((byte[])tables.Clone(), 0),
            [FirmwareLoader.RsdpFile] = ((byte[])rsdp.Clone(), 0),
        };
        // Execute the commands as SeaBIOS's romfile_loader does.
        string Name(int at) => Encoding.ASCII.GetString(loader, at, 56).TrimEnd('\0');
        ulong nextHigh = 0x0FFF_0000, nextFseg = 0xF5000;
        for (int at = 0; at < loader.Length; at += 128)
        {
            uint cmd = BinaryPrimitives.ReadUInt32LittleEndian(loader.AsSpan(at));
            switch (cmd)
            {
                case FirmwareLoader.CmdAllocate:
                    string file = Name(at + 4);
                    byte zone = loader[at + 64];
                    files[file] = (files[file].Data, zone == FirmwareLoader.ZoneFseg ? nextFseg : nextHigh);
                    Assert.Equal(zone == FirmwareLoader.ZoneFseg ? 16u : 64u, BinaryPrimitives.ReadUInt32LittleEndian(loader.AsSpan(at + 60)));
                    break;
                case FirmwareLoader.CmdAddPointer:
                    var dest = files[Name(at + 4)].Data;
                    ulong src = files[Name(at + 60)].Address;
                    int offset = (int)BinaryPrimitives.ReadUInt32LittleEndian(loader.AsSpan(at + 116));
                    if (loader[at + 120] == 8) BinaryPrimitives.WriteUInt64LittleEndian(dest.AsSpan(offset), BinaryPrimitives.ReadUInt64LittleEndian(dest.AsSpan(offset)) + src);
                    else BinaryPrimitives.WriteUInt32LittleEndian(dest.AsSpan(offset), BinaryPrimitives.ReadUInt32LittleEndian(dest.AsSpan(offset)) + (uint)src);
                    break;
                case FirmwareLoader.CmdAddChecksum:
                    var data = files[Name(at + 4)].Data;
                    int o = (int)BinaryPrimitives.ReadUInt32LittleEndian(loader.AsSpan(at + 60));
                    int start = (int)BinaryPrimitives.ReadUInt32LittleEndian(loader.AsSpan(at + 64));
                    int len = (int)BinaryPrimitives.ReadUInt32LittleEndian(loader.AsSpan(at + 68));
                    byte sum = 0;
                    foreach (byte v in data.AsSpan(start, len)) sum += v;
                    data[o] -= sum;
                    break;
                default: Assert.Fail($"unknown loader command {cmd}"); break;
            }
        }
        var (t, tBase) = files[FirmwareLoader.TablesFile];
        var (r, _) = files[FirmwareLoader.RsdpFile];
        byte Sum(ReadOnlySpan<byte> s) { byte acc = 0; foreach (byte b in s) acc += b; return acc; }
        Assert.Equal(0, Sum(r.AsSpan(0, 20)));
        Assert.Equal(0, Sum(r.AsSpan(0, 36)));
        // Walk RSDP -> XSDT -> every table; each has a valid checksum; FADT -> DSDT.
        ulong xsdt = BinaryPrimitives.ReadUInt64LittleEndian(r.AsSpan(24));
        ReadOnlySpan<byte> Table(ulong address)
        {
            Assert.InRange(address, tBase, tBase + (ulong)t.Length - 36);
            int off = (int)(address - tBase);
            int length = (int)BinaryPrimitives.ReadUInt32LittleEndian(t.AsSpan(off + 4));
            var span = t.AsSpan(off, length);
            Assert.Equal(0, Sum(span));
            return span;
        }
        var x = Table(xsdt).ToArray();
        Assert.Equal("XSDT", Encoding.ASCII.GetString(x, 0, 4));
        var signatures = new List<string>();
        for (int o = 36; o < x.Length; o += 8)
        {
            var table = Table(BinaryPrimitives.ReadUInt64LittleEndian(x.AsSpan(o))).ToArray();
            string sig = Encoding.ASCII.GetString(table, 0, 4);
            signatures.Add(sig);
            if (sig == "FACP")
            {
                Assert.Equal("DSDT", Encoding.ASCII.GetString(Table(BinaryPrimitives.ReadUInt32LittleEndian(table.AsSpan(40))).ToArray(), 0, 4));
                Assert.Equal(BinaryPrimitives.ReadUInt32LittleEndian(table.AsSpan(40)), BinaryPrimitives.ReadUInt64LittleEndian(table.AsSpan(140)));
                Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(table.AsSpan(36))); // no FACS stays null
            }
        }
        Assert.Equal(["FACP", "APIC", "MCFG"], signatures);
        Assert.Equal("RSDT", Encoding.ASCII.GetString(Table(BinaryPrimitives.ReadUInt32LittleEndian(r.AsSpan(16))).ToArray(), 0, 4));
    }

    [Fact]
    public void FirmwareOptionParsesAndConflictsWithKernelBoot()
    {
        var c = VmmConfig.FromArgs(["--firmware", "seabios", "--debugcon", "stderr"]);
        Assert.Equal("seabios", c.Machine.FirmwarePath);
        Assert.Equal("stderr", c.DebugCon);
        Assert.Equal(FirmwareImage.SeaBiosPath, FirmwareImage.Resolve(c.Machine.FirmwarePath!));
        Assert.Equal("/x/bios.bin", VmmConfig.FromJson("""{ "firmware": "/x/bios.bin" }""", "t.json").Machine.FirmwarePath);
        var e = Assert.Throws<VmmConfigException>(() => VmmConfig.FromArgs(["--firmware", "seabios", "--kernel", "/boot/vmlinuz"]));
        Assert.Contains("firmware boot cannot be combined with kernel", e.Message);
        Assert.Throws<VmmConfigException>(() => VmmConfig.FromArgs(["--firmware", "seabios", "--cmdline", "console=ttyS0"]));
        Assert.Contains("at most 2816 MiB", Assert.Throws<VmmConfigException>(() => VmmConfig.FromArgs(["--firmware", "seabios", "--memory", "3G"])).Message);
        Assert.Throws<VmmConfigException>(() => VmmConfig.FromArgs(["--debugcon", "tty"]));
    }

    [Fact]
    public void MissingOrBadFirmwareImageIsABootImageError()
    {
        Assert.Throws<BootImageException>(() => FirmwareImage.Load("/nonexistent/bios.bin"));
        string tiny = Path.GetTempFileName();
        try
        {
            File.WriteAllBytes(tiny, new byte[1000]);
            Assert.Contains("multiple of 4 KiB", Assert.Throws<BootImageException>(() => FirmwareImage.Load(tiny)).Message);
        }
        finally { File.Delete(tiny); }
    }

    [Fact]
    public void LargeImagesMoveKvmsTssBelowThem()
    {
        string big = Path.GetTempFileName();
        try
        {
            File.WriteAllBytes(big, new byte[2 << 20]);
            using var image = FirmwareImage.Load(big);
            Assert.Equal(0xFFE0_0000UL, image.GuestAddress);
            Assert.Equal(0xFFDF_D000UL, image.KvmTssAddress);
            Assert.Equal(0xFFDF_C000UL, image.KvmIdentityMapAddress);
        }
        finally { File.Delete(big); }
    }
}
