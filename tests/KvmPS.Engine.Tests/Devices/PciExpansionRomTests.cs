using System.Buffers.Binary;
using KvmPS.Devices;
using KvmPS.Devices.Config;
using KvmPS.Devices.Pci;
using KvmPS.Devices.Virtio.Net;
using KvmPS.Engine.Tests.Devices.State;
using KvmPS.State;
using KvmPS.Vm;

namespace KvmPS.Engine.Tests.Devices;

/// <summary>The expansion ROM BAR at config offset 0x30: sizing, enabling, read-only contents, bad images, state.</summary>
[Trait("Category", "NetworkBoot")]
public sealed class PciExpansionRomTests
{
    private readonly MmioBus _mmio = new();
    private readonly PciBus _bus;

    public PciExpansionRomTests() => _bus = new PciBus(_mmio, VirtioPciTransportTests.TestWindows);

    /// <summary>An option ROM image: the signature, the size in 512-byte blocks, then a counting pattern.</summary>
    private static byte[] Image(int length)
    {
        var image = new byte[length];
        for (int i = 0; i < length; i++) image[i] = (byte)(i * 7 + 3);
        image[0] = 0x55;
        image[1] = 0xAA;
        image[2] = (byte)Math.Min(255, (length + 511) / 512);
        return image;
    }

    private EchoDevice Plug(byte[]? rom, int slot = 3)
    {
        var device = new EchoDevice();
        if (rom is not null) device.AttachExpansionRom(new PciExpansionRom(rom));
        _bus.AddDevice(slot, device);
        return device;
    }

    private static uint Read32(PciDevice d, int offset)
    {
        Span<byte> b = stackalloc byte[4];
        d.ConfigRead(offset, b);
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    private static void Write32(PciDevice d, int offset, uint value)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        d.ConfigWrite(offset, b);
    }

    private byte[] ReadMemory(ulong address, int length)
    {
        var data = new byte[length];
        for (int i = 0; i < length; i += 4) Assert.True(_mmio.Read(address + (ulong)i, data.AsSpan(i, Math.Min(4, length - i))), $"nothing decodes 0x{address + (ulong)i:x}");
        return data;
    }

    [Fact]
    public void SizingReturnsTheImageRoundedUpToAPowerOfTwo()
    {
        var d = Plug(Image(75_776)); // iPXE's pxe-virtio.rom size: 128 KiB BAR
        Assert.Equal(0u, Read32(d, 0x30)); // unassigned and disabled at power-on
        Write32(d, 0x30, 0xFFFF_FFFE);     // SeaBIOS's probe: all address bits, enable clear
        Assert.Equal(0xFFFE_0000u, Read32(d, 0x30));
        Write32(d, 0x30, 0xFFFF_FFFF);     // with the enable bit: it reads back, bits 10:1 stay zero
        Assert.Equal(0xFFFE_0001u, Read32(d, 0x30));
        Assert.Equal(0x2_0000u, d.ExpansionRom!.BarSize);
        // A tiny ROM still decodes the PCI minimum of 2 KiB.
        Assert.Equal(2048u, new PciExpansionRom(Image(600)).BarSize);
    }

    [Fact]
    public void WithoutARomTheRegisterIsHardwiredToZero()
    {
        var d = Plug(null);
        Write32(d, 0x30, 0xFFFF_FFFE);
        Assert.Equal(0u, Read32(d, 0x30));
        Write32(d, 0x30, 0xE000_0001);
        Assert.Equal(0u, Read32(d, 0x30));
        Assert.Null(d.ExpansionRomMappedAt);
    }

    [Fact]
    public void TheRomDecodesOnlyWithItsEnableBitAndMemoryDecodeAndMoves()
    {
        var image = Image(5000); // 8 KiB BAR: the tail past the image reads as zero
        var d = Plug(image);
        const uint At = 0xC800_0000;
        Write32(d, 0x30, At);
        Assert.Null(d.ExpansionRomMappedAt);                 // address set, enable bit clear
        Assert.False(_mmio.Read(At, new byte[4]));
        Write32(d, 0x30, At | 1);
        Assert.Equal(At, d.ExpansionRomMappedAt);
        Assert.Equal(image, ReadMemory(At, image.Length));
        Assert.Equal(new byte[8192 - 5000], ReadMemory(At + 5000, 8192 - 5000));

        // Memory decode off in the command register: the ROM goes away with the BARs, and comes back.
        ushort command = d.Command;
        d.ConfigWrite(0x04, BitConverter.GetBytes((ushort)(command & ~PciDevice.CommandMemory)));
        Assert.Null(d.ExpansionRomMappedAt);
        d.ConfigWrite(0x04, BitConverter.GetBytes(command));
        Assert.Equal(At, d.ExpansionRomMappedAt);

        // Moved: the old address no longer decodes. Byte writes to the register work as dword ones do.
        const uint Moved = 0xC900_0000;
        d.ConfigWrite(0x33, [0xC9]);
        Assert.Equal(Moved, d.ExpansionRomMappedAt);
        Assert.False(_mmio.Read(At, new byte[4]));
        Assert.Equal(image[..64], ReadMemory(Moved, 64));

        // Disabled: unmapped.
        Write32(d, 0x30, Moved);
        Assert.Null(d.ExpansionRomMappedAt);
        Assert.False(_mmio.Read(Moved, new byte[4]));
    }

    [Fact]
    public void GuestWritesToTheRomAreIgnored()
    {
        var image = Image(4096);
        var copy = (byte[])image.Clone();
        var d = Plug(image);
        Write32(d, 0x30, 0xC800_0001);
        Assert.True(_mmio.Write(0xC800_0000, [1, 2, 3, 4, 5, 6, 7, 8]));
        Assert.True(_mmio.Write(0xC800_0FFF, [0xEE]));
        Assert.Equal(copy, ReadMemory(0xC800_0000, 4096));
    }

    [Fact]
    public void UnpluggingUnmapsTheRom()
    {
        var d = Plug(Image(4096), slot: 4);
        Write32(d, 0x30, 0xC800_0001);
        _bus.RemoveDevice(4);
        Assert.False(_mmio.Read(0xC800_0000, new byte[4]));
    }

    [Fact]
    public void BadImagesAreRefusedNamingTheFile()
    {
        string dir = Directory.CreateTempSubdirectory("kvt-rom-").FullName;
        try
        {
            string missing = Path.Combine(dir, "missing.rom");
            var e = Assert.Throws<ExpansionRomException>(() => PciExpansionRom.Load(missing));
            Assert.Equal(missing, e.Path);
            Assert.Contains("does not exist", e.Message);

            string unsigned = Path.Combine(dir, "plain.bin");
            File.WriteAllBytes(unsigned, [0x4D, 0x5A, 0, 0]);
            e = Assert.Throws<ExpansionRomException>(() => PciExpansionRom.Load(unsigned));
            Assert.Contains(unsigned, e.Message);
            Assert.Contains("0x55 0xAA", e.Message);

            string empty = Path.Combine(dir, "empty.rom");
            File.WriteAllBytes(empty, []);
            Assert.Contains("empty", Assert.Throws<ExpansionRomException>(() => PciExpansionRom.Load(empty)).Message);

            string big = Path.Combine(dir, "big.rom");
            File.WriteAllBytes(big, Image(PciExpansionRom.MaxBytes + 1));
            e = Assert.Throws<ExpansionRomException>(() => PciExpansionRom.Load(big));
            Assert.Contains("at most 1048576 bytes", e.Message);

            Assert.Contains("directory", Assert.Throws<ExpansionRomException>(() => PciExpansionRom.Load(dir)).Message);

            if (KvmPS.Interop.Libc.GetEuid() != 0) // root reads any file
            {
                string locked = Path.Combine(dir, "locked.rom");
                File.WriteAllBytes(locked, Image(1024));
                File.SetUnixFileMode(locked, UnixFileMode.None);
                Assert.Contains("cannot read", Assert.Throws<ExpansionRomException>(() => PciExpansionRom.Load(locked)).Message);
            }

            // Through the net device's rom_path: a configuration error naming the key and the file.
            var config = NetDeviceConfig.Parse(DeviceOptions.FromFlag($"net,tap=kvt0,rom_path={unsigned}"));
            Assert.Equal(unsigned, config.RomPath);
            var ce = Assert.Throws<DeviceConfigException>(() => config.LoadExpansionRom());
            Assert.Contains($"key 'rom_path': {unsigned}", ce.Message);
            Assert.Throws<DeviceConfigException>(() => NetDeviceConfig.Parse(DeviceOptions.FromFlag("net,tap=kvt0,rom_path=")));

            // A good one loads.
            string good = Path.Combine(dir, "good.rom");
            File.WriteAllBytes(good, Image(3000));
            var rom = NetDeviceConfig.Parse(DeviceOptions.FromFlag($"net,tap=kvt0,rom_path={good}")).LoadExpansionRom();
            Assert.Equal(4096u, rom!.BarSize);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void AttachingAfterPluggingIsRefused()
    {
        var d = Plug(null);
        Assert.Throws<InvalidOperationException>(() => d.AttachExpansionRom(new PciExpansionRom(Image(1024))));
    }

    [Fact]
    public void TheRomBarRoundTripsThroughStateAndDecodesAgain()
    {
        var image = Image(4096);
        var d = Plug(image, slot: 3);
        Write32(d, 0x30, 0xC800_0001);

        var otherMmio = new MmioBus();
        var otherBus = new PciBus(otherMmio, VirtioPciTransportTests.TestWindows);
        var fresh = new EchoDevice();
        fresh.AttachExpansionRom(new PciExpansionRom(image));
        otherBus.AddDevice(3, fresh);
        StateAssert.RoundTrips(d, fresh);
        Assert.Equal(0xC800_0001u, Read32(fresh, 0x30));
        Assert.Equal(0xC800_0000UL, fresh.ExpansionRomMappedAt);
        var back = new byte[4];
        Assert.True(otherMmio.Read(0xC800_0000, back));
        Assert.Equal(image[..4], back);

        StateAssert.RejectsDamagedRecords(d, () =>
        {
            var f = new EchoDevice();
            f.AttachExpansionRom(new PciExpansionRom(image));
            new PciBus(new MmioBus(), VirtioPciTransportTests.TestWindows).AddDevice(3, f);
            return f;
        });
    }

    [Fact]
    public void ARomMismatchIsRefusedAndVersion1RecordsReadAsNoRom()
    {
        var withRom = Plug(Image(4096), slot: 3);
        var withoutRom = new EchoDevice();
        new PciBus(new MmioBus(), VirtioPciTransportTests.TestWindows).AddDevice(3, withoutRom);

        var e = Assert.Throws<StateFormatException>(() => DeviceState.Restore(withoutRom, DeviceState.Save(withRom), PciDeviceState.Version));
        Assert.Contains("expansion ROM BAR (0x1000 bytes) differs from echo's (none)", e.Message);

        // A version-1 record (before ROM BARs): the same bytes without the trailing ROM size.
        var plain = new EchoDevice();
        new PciBus(new MmioBus(), VirtioPciTransportTests.TestWindows).AddDevice(3, plain);
        var v2 = DeviceState.Save(plain);
        var v1 = v2[..^4];
        var restored = new EchoDevice();
        new PciBus(new MmioBus(), VirtioPciTransportTests.TestWindows).AddDevice(3, restored);
        DeviceState.Restore(restored, v1, 1);
        Assert.Equal(v2, DeviceState.Save(restored));
        // A version-1 record into a device that has a ROM: refused (the snapshot was made without one).
        var romDevice = new EchoDevice();
        romDevice.AttachExpansionRom(new PciExpansionRom(Image(4096)));
        new PciBus(new MmioBus(), VirtioPciTransportTests.TestWindows).AddDevice(3, romDevice);
        Assert.Throws<StateFormatException>(() => DeviceState.Restore(romDevice, v1, 1));
    }
}
