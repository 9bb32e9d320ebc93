using KvmPS.Devices.Pci;
using KvmPS.Engine.Tests.Support;
using KvmPS.Interop;
using KvmPS.Vm;

namespace KvmPS.Engine.Tests.Devices;

public class KvmMsiRouterTests
{
    [Fact]
    public void DefaultTableMatchesKvmsIrqchipRouting()
    {
        var routes = KvmMsiRouter.DefaultRoutes();
        Assert.Equal(24 + 16, routes.Count);
        Assert.All(routes, r => Assert.Equal(KvmConstants.KVM_IRQ_ROUTING_IRQCHIP, r.type));
        for (uint gsi = 0; gsi < 24; gsi++)
            Assert.Contains(routes, r => r.gsi == gsi && r.irqchip_irqchip == KvmMsiRouter.IrqchipIoapic && r.irqchip_pin == gsi);
        Assert.Contains(routes, r => r.gsi == 4 && r.irqchip_irqchip == KvmMsiRouter.IrqchipPicMaster && r.irqchip_pin == 4);
        Assert.Contains(routes, r => r.gsi == 9 && r.irqchip_irqchip == KvmMsiRouter.IrqchipPicSlave && r.irqchip_pin == 1);
        Assert.DoesNotContain(routes, r => r.gsi >= 16 && r.irqchip_irqchip != KvmMsiRouter.IrqchipIoapic);
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
            Assert.Equal(40 + 2, table.Length);
            Assert.Contains(table, e => e.type == KvmConstants.KVM_IRQ_ROUTING_MSI && e.gsi == KvmMsiRouter.FirstMsiGsi && e.msi_data == 0x41);
            Assert.Contains(table, e => e.type == KvmConstants.KVM_IRQ_ROUTING_MSI && e.gsi == KvmMsiRouter.FirstMsiGsi + 1 && e.msi_address_lo == 0xFEE0_0000);
            r1.Fire(); // the guest has not set up vector 0x41: KVM just records it in the LAPIC IRR
        }
        Assert.Empty(log);
        Assert.Equal(40, router.BuildTable().Length);
        // The VM still boots and runs with the re-created default table (the UART IRQ path included).
        var exit = run.RunToExit(TimeSpan.FromSeconds(60));
        Assert.Equal(3, exit.DebugExitValue);
    }
}
