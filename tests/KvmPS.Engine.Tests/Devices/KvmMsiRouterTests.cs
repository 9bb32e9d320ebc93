using KvmPS.Devices.Pci;
using KvmPS.Engine.Tests.Support;
using KvmPS.Interop;
using KvmPS.Vm;

namespace KvmPS.Engine.Tests.Devices;

public class KvmMsiRouterTests
{
    [Fact]
    public void IrqchipTableWiresThePitToIoapicPin2AsTheMadtOverrideSays()
    {
        var routes = KvmMsiRouter.IrqchipRoutes();
        Assert.Equal(23 + 15, routes.Count);
        Assert.All(routes, r => Assert.Equal(KvmConstants.KVM_IRQ_ROUTING_IRQCHIP, r.type));
        // ISA IRQ0 (the PIT raises GSI 0) reaches IOAPIC pin 2 and PIC pin 0; nothing else claims pin 2 or GSI 2.
        Assert.Contains(routes, r => r.gsi == 0 && r.irqchip_irqchip == KvmMsiRouter.IrqchipIoapic && r.irqchip_pin == 2);
        Assert.Contains(routes, r => r.gsi == 0 && r.irqchip_irqchip == KvmMsiRouter.IrqchipPicMaster && r.irqchip_pin == 0);
        Assert.Single(routes, r => r.irqchip_irqchip == KvmMsiRouter.IrqchipIoapic && r.irqchip_pin == 2);
        Assert.DoesNotContain(routes, r => r.gsi == 2);
        for (uint gsi = 1; gsi < 24; gsi++)
            if (gsi != 2)
                Assert.Contains(routes, r => r.gsi == gsi && r.irqchip_irqchip == KvmMsiRouter.IrqchipIoapic && r.irqchip_pin == gsi);
        Assert.Contains(routes, r => r.gsi == 4 && r.irqchip_irqchip == KvmMsiRouter.IrqchipPicMaster && r.irqchip_pin == 4);
        Assert.Contains(routes, r => r.gsi == 9 && r.irqchip_irqchip == KvmMsiRouter.IrqchipPicSlave && r.irqchip_pin == 1);
        Assert.DoesNotContain(routes, r => r.gsi >= 16 && r.irqchip_irqchip != KvmMsiRouter.IrqchipIoapic);
    }

    [Fact]
    public void ThePitInterruptsThroughTheGsiTheMadtNames()
    {
        // The guest routes ISA IRQ0 where the MADT's override puts it (GSI 2) and counts 100 Hz ticks for 200 ms.
        // With KVM's identity routing (before this table) it saw none: Linux's "MP-BIOS bug: 8254 timer not connected".
        using var run = new GuestRun(new MachineConfig { Cmdline = "kvmps.run=pit,exit 3" });
        var exit = run.RunToExit(TimeSpan.FromSeconds(60));
        Assert.Equal(3, exit.DebugExitValue);
        var match = System.Text.RegularExpressions.Regex.Match(run.Output, @"pit: irq0 gsi=(\d+) ticks=(\d+)");
        Assert.True(match.Success, run.Output);
        Assert.Equal("2", match.Groups[1].Value);
        Assert.InRange(int.Parse(match.Groups[2].Value), 5, 40);
    }

    [Fact]
    public void MsiRoutesAreAcceptedByKvmAndFireThroughIrqfd()
    {
        using var run = new GuestRun(new MachineConfig { Cmdline = "kvmps.run=exit 3" });
        var log = new List<string>();
        using var router = new KvmMsiRouter(run.Machine.Handle, log.Add);
        using (var r1 = router.CreateRoute())
        using (var r2 = router.CreateRoute())
        {
            r1.Configure(0xFEE0_0000, 0x0041);
            r2.Configure(0xFEE0_0000, 0x0042);
            r1.Configure(0xFEE0_0000, 0x0041); // unchanged: no new commit
            var table = router.BuildTable();
            Assert.Equal(KvmMsiRouter.IrqchipRoutes().Count + 2, table.Length);
            Assert.Contains(table, e => e.type == KvmConstants.KVM_IRQ_ROUTING_MSI && e.gsi == KvmMsiRouter.FirstMsiGsi && e.msi_data == 0x41);
            Assert.Contains(table, e => e.type == KvmConstants.KVM_IRQ_ROUTING_MSI && e.gsi == KvmMsiRouter.FirstMsiGsi + 1 && e.msi_address_lo == 0xFEE0_0000);
            r1.Fire(); // the guest has not set up vector 0x41: KVM just records it in the LAPIC IRR
        }
        Assert.Empty(log);
        Assert.Equal(KvmMsiRouter.IrqchipRoutes().Count, router.BuildTable().Length);
        // The VM still boots and runs with the re-created default table (the UART IRQ path included).
        var exit = run.RunToExit(TimeSpan.FromSeconds(60));
        Assert.Equal(3, exit.DebugExitValue);
    }

    [Fact]
    public void AForeignEventfdBindsToARoutesGsiAndLeavesWithTheRoute()
    {
        // KVM refuses an eventfd that is already an irqfd (EBUSY): binding the same one again after the route went
        // proves the route's disposal unbound it, and an explicit unbind lets it bind again at once.
        using var run = new GuestRun(new MachineConfig { Cmdline = "kvmps.run=exit 3" });
        var log = new List<string>();
        using var router = new KvmMsiRouter(run.Machine.Handle, log.Add);
        using var device = EventFdHandle.Create();
        var r1 = (IIrqfdRoute)router.CreateRoute();
        Assert.False(r1.Ready);                                  // no message yet
        r1.Configure(0xFEE0_0000, 0x0041);
        Assert.True(r1.Ready);
        r1.Bind(device);
        r1.Bind(device);                                         // already bound: nothing asked of KVM
        var r2 = (IIrqfdRoute)router.CreateRoute();
        r2.Configure(0xFEE0_0000, 0x0042);
        Assert.ThrowsAny<IOException>(() => r2.Bind(device));   // KVM: this eventfd already feeds a GSI
        r1.Unbind(device);
        r2.Bind(device);
        device.Signal();                                         // straight into KVM: nothing is left to read
        Assert.Equal(0UL, device.Consume());
        r2.Dispose();                                            // unbinds what is still bound
        r1.Bind(device);
        r1.Dispose();
        r2.Unbind(device);                                       // a disposed route: nothing bound, nothing to do
        device.Signal();                                         // unbound: the count stays for whoever reads it
        Assert.Equal(1UL, device.Consume());
        Assert.Empty(log);
        Assert.Equal(3, run.RunToExit(TimeSpan.FromSeconds(60)).DebugExitValue);
    }
}
