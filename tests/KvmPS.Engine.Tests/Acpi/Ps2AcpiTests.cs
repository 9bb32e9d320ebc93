using KvmPS.Acpi;

namespace KvmPS.Engine.Tests.Acpi;

/// <summary>With a display, the PS/2 keyboard and mouse are announced: SeaBIOS skips PS/2 without PNP0303 in the DSDT.</summary>
public sealed class Ps2AcpiTests
{
    [Fact]
    public void DsdtDescribesTheKeyboardAndMouseAndFadtTheEightyFortyTwo()
    {
        string dir = Directory.CreateTempSubdirectory("ps2-acpi-").FullName;
        try
        {
            File.WriteAllBytes(Path.Combine(dir, "DSDT.dat"), AcpiTables.BuildDsdt(new AcpiConfig(1, 1) { Ps2Devices = true }));
            var (rc, output) = Acpica.Run("iasl", dir, null, "-d", "DSDT.dat");
            Assert.True(rc == 0, output);
            string dsl = File.ReadAllText(Path.Combine(dir, "DSDT.dsl"));
            Assert.Contains("Device (KBD)", dsl);
            Assert.Contains("PNP0303", dsl);
            Assert.Contains("Device (MOU)", dsl);
            Assert.Contains("PNP0F13", dsl);
            Assert.Contains("IRQNoFlags ()\n                    {1}", dsl.Replace("\r", ""));
            Assert.Contains("{12}", dsl);
            Assert.Contains("0x0064", dsl);

            byte[] fadt = AcpiTables.BuildFadt(0x1000, ps2Devices: true);
            Assert.Equal(2, BitConverter.ToUInt16(fadt, 109));
            Assert.Equal(0, BitConverter.ToUInt16(AcpiTables.BuildFadt(0x1000), 109));
            Assert.Equal(-1, AcpiTables.BuildDsdt(new AcpiConfig(1, 1)).AsSpan().IndexOf("KBD_"u8)); // without a display: no PS/2 objects
        }
        finally { Directory.Delete(dir, true); }
    }
}
