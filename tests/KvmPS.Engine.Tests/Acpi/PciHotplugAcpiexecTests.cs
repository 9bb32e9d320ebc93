using KvmPS.Acpi;

namespace KvmPS.Engine.Tests.Acpi;

/// <summary>
/// ACPICA's <c>acpiexec</c> runs the PCI hot-plug AML of the DSDT <c>--acpi-tables-out</c> writes: the scan as
/// <c>\_GPE._E01</c> (the way the OS runs it on the event) and every hot-plug slot's <c>_ADR</c>, <c>_SUN</c> and
/// <c>_EJ0</c>. acpiexec backs the I/O region with memory filled with one byte (<c>-fv</c>): 0 is a controller with no
/// event pending, 255 one with an insert and an eject request pending in every slot; the scan's notifications must
/// follow. Slots that hold configured devices that must stay have no slot object; configured virtio-net devices and
/// disks other than the first have one (live removal of configured devices).
/// </summary>
public sealed class PciHotplugAcpiexecTests
{
    [Theory]
    [InlineData(0)]
    [InlineData(2)] // rng and balloon in slots 1 and 2
    public void TheScanAndEverySlotsMethodsRunAndFollowTheController(int configuredDevices)
    {
        string dir = Acpica.DumpTables(1, 1, configuredDevices == 0 ? [] : ["--device", "rng", "--device", "balloon"]);
        try
        {
            var slots = Enumerable.Range(configuredDevices + 1, 31 - configuredDevices).ToArray();
            var perSlot = slots.SelectMany(s => new[] { $"evaluate {PciHotplugAcpi.SlotPath(s)}._ADR", $"evaluate {PciHotplugAcpi.SlotPath(s)}._SUN" }).ToList();

            string idle = Acpica.Execute(dir, 0, ["evaluate \\_GPE._E01", .. perSlot]);
            var results = Acpica.Results(idle);
            foreach (int s in slots)
            {
                Assert.Equal($"{(ulong)s << 16:X16}", results[$"{PciHotplugAcpi.SlotPath(s)}._ADR"]);
                Assert.Equal($"{s:X16}", results[$"{PciHotplugAcpi.SlotPath(s)}._SUN"]);
            }
            Assert.Empty(Acpica.Notifications(idle));

            // Every event pending: Device Check and Eject Request for each hot-plug slot; each slot's _EJ0 runs.
            string busy = Acpica.Execute(dir, 255, ["evaluate \\_GPE._E01", .. slots.Select(s => $"evaluate {PciHotplugAcpi.SlotPath(s)}._EJ0 1")]);
            // ACPICA pads a name segment to four characters: S07 is S07_.
            var expected = slots.SelectMany(s => new[] { (PciHotplugAcpi.SlotName(s) + "_", "01"), (PciHotplugAcpi.SlotName(s) + "_", "03") }).Order();
            Assert.Equal(expected, Acpica.Notifications(busy));

            // A configured device's slot has no slot object: it cannot be ejected.
            if (configuredDevices > 0)
            {
                var (_, output) = Acpica.Run("acpiexec", dir, null, "-b", $"evaluate {PciHotplugAcpi.SlotPath(1)}._EJ0 1", "DSDT.dat");
                Assert.Contains("AE_NOT_FOUND", output);
            }
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void RemovableConfiguredSlotsGetSlotObjectsTheFirstDiskAndRngNoneAndIaslIsClean()
    {
        // Slots: 1 first disk (stays), 2 net (removable), 3 second disk (removable), 4 rng (stays), 5-31 hot-plug.
        string dir = Acpica.DumpTables(1, 1, "--device", "block,path=/nonexistent/d0.raw", "--device", "net,tap=kvt-none",
            "--device", "block,path=/nonexistent/d1.raw", "--device", "rng");
        try
        {
            int[] withObjects = [2, 3, .. Enumerable.Range(5, 27)];
            string idle = Acpica.Execute(dir, 0, ["evaluate \\_GPE._E01", .. withObjects.Select(s => $"evaluate {PciHotplugAcpi.SlotPath(s)}._ADR")]);
            var results = Acpica.Results(idle);
            foreach (int s in withObjects) Assert.Equal($"{(ulong)s << 16:X16}", results[$"{PciHotplugAcpi.SlotPath(s)}._ADR"]);
            Assert.Empty(Acpica.Notifications(idle));

            // Every event pending: the scan notifies the removable configured slots like the hot-plug ones, and their _EJ0 runs.
            string busy = Acpica.Execute(dir, 255, ["evaluate \\_GPE._E01", "evaluate \\_SB.PCI0.S02._EJ0 1", "evaluate \\_SB.PCI0.S03._EJ0 1"]);
            var expected = withObjects.SelectMany(s => new[] { (PciHotplugAcpi.SlotName(s) + "_", "01"), (PciHotplugAcpi.SlotName(s) + "_", "03") }).Order();
            Assert.Equal(expected, Acpica.Notifications(busy));

            foreach (int stays in new[] { 1, 4 })
            {
                var (_, output) = Acpica.Run("acpiexec", dir, null, "-b", $"evaluate {PciHotplugAcpi.SlotPath(stays)}._EJ0 1", "DSDT.dat");
                Assert.Contains("AE_NOT_FOUND", output);
            }

            var (rc, disassembly) = Acpica.Run("iasl", dir, null, "-d", "DSDT.dat");
            Assert.True(rc == 0, $"iasl -d DSDT.dat exited {rc}:\n{disassembly}");
            Assert.DoesNotMatch(new System.Text.RegularExpressions.Regex("error|warning", System.Text.RegularExpressions.RegexOptions.IgnoreCase), disassembly);
            var (compileRc, compiled) = Acpica.Run("iasl", dir, null, "-p", "DSDT-recompiled", "DSDT.dsl");
            Assert.True(compileRc == 0, $"iasl DSDT.dsl exited {compileRc}:\n{compiled}");
            Assert.Matches(@"Compilation successful\. 0 Errors, 0 Warnings", compiled);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
