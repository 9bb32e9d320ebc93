using System.Buffers.Binary;
using System.Text;
using KvmPS.Vm;
using KvmPS.Vm.Boot;
using KvmPS.Vm.Firmware;

namespace KvmPS.Engine.Tests.Boot;

/// <summary>The zero page (boot_params) as Documentation/arch/x86/zero-page.rst and boot.rst lay it out.</summary>
public class BootParamsTests
{
    private static readonly E820Entry[] E820 =
    [
        new(0, 0x9fc00, E820Type.Ram),
        new(0x9fc00, 0x60400, E820Type.Reserved),
        new(0x10_0000, 0xff0_0000, E820Type.Ram),
    ];

    private static uint U32(byte[] zp, int offset) => BinaryPrimitives.ReadUInt32LittleEndian(zp.AsSpan(offset));
    private static ushort U16(byte[] zp, int offset) => BinaryPrimitives.ReadUInt16LittleEndian(zp.AsSpan(offset));

    [Fact]
    public void BzImageSetupHeaderIsCopiedAndTheLoaderFieldsFilledIn()
    {
        using var memory = GuestMemory.Create(256UL << 20);
        byte[] image = KernelImages.BzImage(loadflags: 0x01);
        var kernel = KernelLoader.Load(memory, "bz", image);

        byte[] zp = BootParams.Build(kernel, E820, 0x20000, 42, (0x0f00_0000, 0x12345), 0xe0000);

        Assert.Equal(BootParams.Size, zp.Length);
        // The kernel's own header is there (init_size, pref_address, xloadflags...).
        Assert.Equal(image[0x1f1..0x210], zp[0x1f1..0x210]);
        Assert.Equal(image[0x22c..0x238], zp[0x22c..0x238]);
        Assert.Equal(image[0x258..KernelImages.HeaderEnd], zp[0x258..KernelImages.HeaderEnd]);
        Assert.Equal(0xff, zp[0x210]);                // type_of_loader: undefined bootloader
        Assert.Equal(0x81, zp[0x211]);                // loadflags: LOADED_HIGH | CAN_USE_HEAP
        Assert.Equal(0xfe00, U16(zp, 0x224));         // heap_end_ptr
        Assert.Equal(0x20000u, U32(zp, 0x228));       // cmd_line_ptr
        Assert.Equal(0u, U32(zp, 0x0c8));             // ext_cmd_line_ptr
        Assert.Equal(42u, U32(zp, 0x238));            // cmdline_size
        Assert.Equal(0x0f00_0000u, U32(zp, 0x218));   // ramdisk_image
        Assert.Equal(0x12345u, U32(zp, 0x21c));       // ramdisk_size
        Assert.Equal(0xe0000UL, BinaryPrimitives.ReadUInt64LittleEndian(zp.AsSpan(0x070))); // acpi_rsdp_addr
    }

    [Fact]
    public void ElfKernelsGetASynthesizedHeader()
    {
        var kernel = new LoadedKernel(KernelFormat.Elf64, 0x100_0000, 0x100_0000, 0x300_0000, null, 0x37ff_ffff);
        byte[] zp = BootParams.Build(kernel, E820, 0x20000, 10, null, 0xe0000);
        Assert.Equal(0xAA55, U16(zp, 0x1fe));
        Assert.Equal(0x53726448u, U32(zp, 0x202)); // "HdrS"
        Assert.True(U16(zp, 0x206) >= 0x020c);      // protocol version
        Assert.Equal(0xff, zp[0x210]);
        Assert.Equal(0x20000u, U32(zp, 0x228));
        Assert.Equal(0u, U32(zp, 0x218));          // no initrd
        Assert.Equal(0u, U32(zp, 0x21c));
    }

    [Fact]
    public void E820TableIsInTheZeroPage()
    {
        var kernel = new LoadedKernel(KernelFormat.Elf64, 0x100_0000, 0x100_0000, 0x300_0000, null, 0x37ff_ffff);
        byte[] zp = BootParams.Build(kernel, E820, 0x20000, 10, null, 0xe0000);
        Assert.Equal(E820.Length, zp[0x1e8]);
        for (int i = 0; i < E820.Length; i++)
        {
            var slot = zp.AsSpan(0x2d0 + i * 20, 20);
            Assert.Equal(E820[i].Address, BinaryPrimitives.ReadUInt64LittleEndian(slot));
            Assert.Equal(E820[i].SizeBytes, BinaryPrimitives.ReadUInt64LittleEndian(slot[8..]));
            Assert.Equal((uint)E820[i].Type, BinaryPrimitives.ReadUInt32LittleEndian(slot[16..]));
        }
    }

    [Fact]
    public void TooManyE820EntriesAreRefused()
    {
        var kernel = new LoadedKernel(KernelFormat.Elf64, 0x100_0000, 0x100_0000, 0x300_0000, null, 0x37ff_ffff);
        var many = Enumerable.Range(0, E820Map.MaxEntries + 1).Select(i => new E820Entry((ulong)i << 20, 1 << 20, E820Type.Ram)).ToArray();
        Assert.Throws<ArgumentException>(() => BootParams.Build(kernel, many, 0x20000, 10, null, 0xe0000));
    }

    [Fact]
    public void CommandLineIsNulTerminatedAtItsAddress()
    {
        using var memory = GuestMemory.Create(16UL << 20);
        memory.Fill(MemoryLayout.CmdlineAddress, 64, 0xff);
        int length = BootParams.WriteCmdline(memory, "console=ttyS0 quiet");
        Assert.Equal(20, length);
        byte[] back = new byte[20];
        memory.Read(MemoryLayout.CmdlineAddress, back);
        Assert.Equal("console=ttyS0 quiet\0", Encoding.ASCII.GetString(back));
    }

    [Fact]
    public void OverlongCommandLineIsRefused()
    {
        using var memory = GuestMemory.Create(16UL << 20);
        Assert.Throws<ArgumentException>(() => BootParams.WriteCmdline(memory, new string('x', MemoryLayout.CmdlineMaxBytes)));
    }
}
