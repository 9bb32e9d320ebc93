/*
 * ACPI events without an AML interpreter. The SCI (FADT SCI_INT, routed through the IOAPIC) signals:
 * - the fixed-feature power button (PM1 PWRBTN_STS): the guest powers off through S5, as `poweroff` does;
 * - the CPU hot-plug GPE: the guest does what the DSDT's \_SB.CPUS.CSCN does, reading the controller's registers
 *   directly (the SystemIO region CPHR; its GPE is the _Exx method that calls CSCN): an inserted CPU is started
 *   with INIT/SIPI, a CPU to remove is parked and then ejected. Every event is acknowledged in the controller.
 * - the PCI hot-plug GPE: the guest does what \_SB.PCI0.PSCN does with the PCI hot-plug controller (region PCHR):
 *   it takes the insert and eject-request bitmaps, reports each inserted slot (a new virtio-blk or virtio-net device is
 *   brought up by its driver when that driver has no device), and for each slot to remove resets the device if a
 *   driver uses it, then ejects the slot
 *   (what the slot's _EJ0 writes). `info` lists the hot-plug slots and the devices in them.
 * The handler runs on the BSP with interrupts off; the GPE status bit is cleared before the scan, so an event that
 * arrives during the scan raises the SCI again.
 */
#include "acpi_events.h"
#include "acpi.h"
#include "apic.h"
#include "bootinfo.h"
#include "idt.h"
#include "io.h"
#include "layout.h"
#include "lib.h"
#include "smp.h"
#include "pci.h"
#include "timer.h"
#include "virtio_blk.h"
#include "virtio_net.h"

#define PWRBTN_STS 0x0100
#define PWRBTN_EN 0x0100
#define SCI_EN 0x0001

/* The hot-plug controller (src/KvmPS.Engine/Acpi/CpuHotplugController.cs). */
#define CPHP_SELECT 0
#define CPHP_STATUS 4
#define CPHP_COMMAND 5
#define CPHP_PRESENT 0x01
#define CPHP_INSERTING 0x02
#define CPHP_REMOVING 0x04
#define CPHP_CMD_ACK_INSERT 1
#define CPHP_CMD_ACK_REMOVE 2
#define CPHP_CMD_EJECT 3

static u16 cphp_port;   /* 0: no hot-plug controller */
static int cphp_gpe = -1;

/* The PCI hot-plug controller (src/KvmPS.Engine/Acpi/PciHotplugController.cs): 32-bit slot bitmaps. */
#define PCHP_UP 0x0      /* insert events, write 1 to clear */
#define PCHP_DOWN 0x4    /* eject requests, write 1 to clear */
#define PCHP_EJECT 0x8   /* write 1: eject the slot */
#define PCHP_SLOTS 0xc   /* hot-pluggable slots */
#define PCHP_LENGTH 16

static u16 pchp_port;   /* 0: no PCI hot-plug controller */
static int pchp_gpe = -1;

static u32 slot_id(u8 slot)
{
    struct pci_dev d = { 0, slot, 0, 0, 0, 0 };
    return pci_read32(&d, PCI_VENDOR);
}

/* PSCN: acknowledge what was read, then act on each slot. */
static void pci_scan_hotplug(void)
{
    u32 up = inl(pchp_port + PCHP_UP), down = inl(pchp_port + PCHP_DOWN);
    outl(pchp_port + PCHP_UP, up);
    outl(pchp_port + PCHP_DOWN, down);
    for (u8 slot = 1; slot < 32; slot++) {
        u32 bit = 1u << slot;
        if (up & bit) {
            u32 id = slot_id(slot);
            if ((id & 0xffff) == 0xffff)
                kprintf("pci: slot %02x insert event, but the slot is empty\n", slot);
            else {
                /* virtio-blk (1af4:1042) and virtio-net (1af4:1041): the driver takes the device if it has none. */
                int attached = id == 0x10421af4 ? blk_attach() : id == 0x10411af4 ? net_attach() : -1;
                kprintf("pci: slot %02x added %04x:%04x%s\n", slot, id & 0xffff, id >> 16,
                        attached == 2 ? " driver ready" : attached == 1 ? " (driver busy with another device)" : attached == 0 ? " driver failed" : "");
            }
        }
        if (down & bit) {
            /* Quiesce first: a driver that uses the device resets it, so the device holds no guest buffers. */
            int released = blk_release_slot(slot) | net_release_slot(slot);
            outl(pchp_port + PCHP_EJECT, bit);
            kprintf("pci: slot %02x ejected%s\n", slot, released ? " (driver released)" : "");
        }
    }
}

static u8 cphp_status(u32 cpu)
{
    outl(cphp_port + CPHP_SELECT, cpu);
    return inb(cphp_port + CPHP_STATUS);
}

static void cphp_command(u32 cpu, u8 command)
{
    outl(cphp_port + CPHP_SELECT, cpu);
    outb(cphp_port + CPHP_COMMAND, command);
}

/* CSCN: every CPU but the boot CPU; the processor UID is the controller's CPU number, the MADT maps it to an APIC ID. */
static void cpu_scan(void)
{
    for (u32 cpu = 1; cpu < acpi.nuids; cpu++) {
        u8 st = cphp_status(cpu);
        u32 apic = acpi.uid_apic[cpu];
        if (st & CPHP_INSERTING) {
            cphp_command(cpu, CPHP_CMD_ACK_INSERT);
            if (smp_start_cpu(apic) == 0)
                kprintf("acpi: cpu %u online\n", cpu);
            else
                kprintf("acpi: cpu %u did not start\n", cpu);
        }
        if (st & CPHP_REMOVING) {
            cphp_command(cpu, CPHP_CMD_ACK_REMOVE);
            if (smp_park_cpu(apic) == 0) {
                cphp_command(cpu, CPHP_CMD_EJECT);
                kprintf("acpi: cpu %u ejected\n", cpu);
            } else {
                kprintf("acpi: cpu %u did not park, not ejected\n", cpu);
            }
        }
    }
}

static void sci_irq(u8 vector)
{
    (void)vector;
    u16 sts = inw(acpi.pm1a_evt);
    if (sts & PWRBTN_STS) {
        outw(acpi.pm1a_evt, PWRBTN_STS); /* write one to clear */
        kprintf("acpi: power button\n");
        acpi_poweroff();
        udelay(100000);
        kprintf("acpi: power off failed\n");
    }
    if (cphp_gpe >= 0) {
        u16 port = acpi.gpe0_blk + (u16)(cphp_gpe / 8);
        u8 bit = (u8)(1u << (cphp_gpe % 8));
        if (inb(port) & bit) {
            outb(port, bit);
            cpu_scan();
        }
    }
    if (pchp_gpe >= 0) {
        u16 port = acpi.gpe0_blk + (u16)(pchp_gpe / 8);
        u8 bit = (u8)(1u << (pchp_gpe % 8));
        if (inb(port) & bit) {
            outb(port, bit);
            pci_scan_hotplug();
        }
    }
}

/* ACPI mode: SCI_EN set by the firmware, or asked for through SMI_CMD (FADT) as an OS does. */
static int acpi_mode_on(void)
{
    if (!acpi.pm1a_cnt)
        return 0;
    if (inw(acpi.pm1a_cnt) & SCI_EN)
        return 1;
    if (!acpi.smi_cmd || !acpi.acpi_enable)
        return 0;
    outb(acpi.smi_cmd, acpi.acpi_enable);
    u64 t0 = timer_ticks(), limit = timer_us_to_ticks(100000);
    while (!(inw(acpi.pm1a_cnt) & SCI_EN) && timer_ticks() - t0 < limit)
        cpu_pause();
    return (inw(acpi.pm1a_cnt) & SCI_EN) != 0;
}

void acpi_events_init(void)
{
    /* kvmps.nosci: behave like a guest without ACPI support (tests of a power button or an eject nobody takes). */
    if (cmdline_has("kvmps.nosci"))
        return;
    if (!acpi.have_fadt || (acpi.fadt_flags & FADT_F_HW_REDUCED) || !acpi.pm1a_evt || !acpi_mode_on())
        return;
    u16 length;
    if (acpi.gpe0_blk && acpi.gpe0_len && acpi_dsdt_io_region("CPHR", &cphp_port, &length) == 0 && length > CPHP_COMMAND) {
        cphp_gpe = acpi_dsdt_gpe_calling("CSCN");
        if (cphp_gpe < 0 || cphp_gpe >= acpi.gpe0_len / 2 * 8) {
            cphp_gpe = -1;
            cphp_port = 0;
        }
    } else {
        cphp_port = 0;
    }
    if (acpi.gpe0_blk && acpi.gpe0_len && acpi_dsdt_io_region("PCHR", &pchp_port, &length) == 0 && length >= PCHP_LENGTH) {
        pchp_gpe = acpi_dsdt_gpe_calling("PSCN");
        if (pchp_gpe < 0 || pchp_gpe >= acpi.gpe0_len / 2 * 8) {
            pchp_gpe = -1;
            pchp_port = 0;
        }
    } else {
        pchp_port = 0;
    }
    u32 gsi;
    u16 flags;
    acpi_isa_irq((u8)acpi.sci_int, &gsi, &flags);
    if (!flags)
        flags = 0x000f; /* the SCI's default with no override: level triggered, active low */
    u64 ioapic = acpi.have_ioapic ? acpi.ioapic_addr : 0xfec00000;
    u32 gsi_base = acpi.have_ioapic ? acpi.ioapic_gsi_base : 0;
    irq_register(VEC_SCI, sci_irq);
    if (ioapic_route(ioapic, gsi_base, gsi, VEC_SCI, flags, lapic_id()) != 0) {
        kprintf("acpi: no IOAPIC pin for the SCI (GSI %u)\n", gsi);
        cphp_port = 0;
        cphp_gpe = -1;
        pchp_port = 0;
        pchp_gpe = -1;
        return;
    }
    /* Pending events (a press or a hot-add before now) are kept: enabling them raises the SCI at the next sti. */
    outw(acpi.pm1a_evt + 2, inw(acpi.pm1a_evt + 2) | PWRBTN_EN);
    if (cphp_gpe >= 0) {
        u16 enable = acpi.gpe0_blk + acpi.gpe0_len / 2 + (u16)(cphp_gpe / 8);
        outb(enable, inb(enable) | (u8)(1u << (cphp_gpe % 8)));
    }
    if (pchp_gpe >= 0) {
        u16 enable = acpi.gpe0_blk + acpi.gpe0_len / 2 + (u16)(pchp_gpe / 8);
        outb(enable, inb(enable) | (u8)(1u << (pchp_gpe % 8)));
    }
}

void acpi_print_pci_hotplug(void)
{
    if (!pchp_port) {
        kprintf("pcihp: none\n");
        return;
    }
    u32 slots = inl(pchp_port + PCHP_SLOTS);
    kprintf("pcihp: gpe=%d slots=%08x devices=", pchp_gpe, slots);
    const char *sep = "";
    for (u8 slot = 1; slot < 32; slot++) {
        if (!(slots & (1u << slot)))
            continue;
        u32 id = slot_id(slot);
        if ((id & 0xffff) != 0xffff) {
            kprintf("%s%02x:%04x:%04x", sep, slot, id & 0xffff, id >> 16);
            sep = ",";
        }
    }
    kprintf("%s\n", *sep ? "" : "-");
}

void acpi_print_cpus(void)
{
    u32 present = 0;
    u64 rflags;
    __asm__ volatile("pushfq; popq %0; cli" : "=r"(rflags) : : "memory"); /* SELECT is shared with the SCI handler */
    if (cphp_port) {
        for (u32 cpu = 0; cpu < acpi.nuids; cpu++)
            present += (cphp_status(cpu) & CPHP_PRESENT) != 0;
    } else {
        present = acpi.have_madt ? acpi.cpus_enabled : smp_online();
    }
    if (rflags & (1UL << 9))
        sti();
    kprintf("cpus: present=%u online=%u ids=", present, smp_online());
    const char *sep = "";
    for (u32 id = 0; id < 256; id++) {
        if (smp_cpu_online(id)) {
            kprintf("%s%u", sep, id);
            sep = ",";
        }
    }
    kprintf("\n");
}
