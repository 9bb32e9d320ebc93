/* Interrupt controllers. */
#include "apic.h"
#include "io.h"
#include "timer.h"

#define MSR_APIC_BASE 0x1b
#define APIC_BASE_ENABLE (1u << 11)
#define APIC_BASE_X2APIC (1u << 10)

#define LAPIC_ID 0x020
#define LAPIC_TPR 0x080
#define LAPIC_EOI 0x0b0
#define LAPIC_SVR 0x0f0
#define LAPIC_ISR 0x100
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310

static u64 lapic_base = 0xfee00000;
static int x2apic;

static u32 lapic_read(u32 reg)
{
    if (x2apic)
        return (u32)rdmsr(0x800 + (reg >> 4));
    return mmio_read32(lapic_base + reg);
}

static void lapic_write(u32 reg, u32 v)
{
    if (x2apic)
        wrmsr(0x800 + (reg >> 4), v);
    else
        mmio_write32(lapic_base + reg, v);
}

void pic_disable(void)
{
    outb(0x20, 0x11); /* ICW1: init, ICW4 needed */
    outb(0xa0, 0x11);
    outb(0x21, 0x20); /* ICW2: vector base */
    outb(0xa1, 0x28);
    outb(0x21, 0x04); /* ICW3: slave on IRQ2 */
    outb(0xa1, 0x02);
    outb(0x21, 0x01); /* ICW4: 8086 mode */
    outb(0xa1, 0x01);
    outb(0x21, 0xff); /* mask all */
    outb(0xa1, 0xff);
}

void lapic_init(u64 base_hint)
{
    u64 msr = rdmsr(MSR_APIC_BASE);
    x2apic = (msr & APIC_BASE_X2APIC) != 0;
    if (!(msr & APIC_BASE_ENABLE))
        wrmsr(MSR_APIC_BASE, msr | APIC_BASE_ENABLE);
    lapic_base = msr & 0xfffff000ULL;
    if (!lapic_base)
        lapic_base = base_hint ? base_hint : 0xfee00000;
    lapic_write(LAPIC_TPR, 0);
    lapic_write(LAPIC_SVR, 0x100 | LAPIC_SPURIOUS_VECTOR); /* software enable */
}

void lapic_enable_local(void)
{
    u64 msr = rdmsr(MSR_APIC_BASE);
    if (!(msr & APIC_BASE_ENABLE))
        wrmsr(MSR_APIC_BASE, msr | APIC_BASE_ENABLE);
    lapic_write(LAPIC_TPR, 0);
    lapic_write(LAPIC_SVR, 0x100 | LAPIC_SPURIOUS_VECTOR);
}

u32 lapic_id(void)
{
    u32 v = lapic_read(LAPIC_ID);
    return x2apic ? v : v >> 24;
}

void lapic_eoi(void)
{
    lapic_write(LAPIC_EOI, 0);
}

int lapic_in_service(u8 vector)
{
    return (lapic_read(LAPIC_ISR + (vector / 32) * 0x10) >> (vector % 32)) & 1;
}

void lapic_send_ipi(u32 apic_id, u32 icr_low)
{
    if (x2apic) {
        wrmsr(0x830, ((u64)apic_id << 32) | icr_low);
        return;
    }
    lapic_write(LAPIC_ICR_HI, apic_id << 24);
    lapic_write(LAPIC_ICR_LO, icr_low);
    for (unsigned i = 0; i < 1000 && (lapic_read(LAPIC_ICR_LO) & ICR_BUSY); i++)
        cpu_pause();
}

static u32 ioapic_read(u64 base, u32 reg)
{
    mmio_write32(base, reg);
    return mmio_read32(base + 0x10);
}

static void ioapic_write(u64 base, u32 reg, u32 v)
{
    mmio_write32(base, reg);
    mmio_write32(base + 0x10, v);
}

int ioapic_route(u64 base, u32 gsi_base, u32 gsi, u8 vector, u16 flags, u32 dest_apic)
{
    if (!base || gsi < gsi_base)
        return -1;
    u32 pin = gsi - gsi_base;
    u32 ver = ioapic_read(base, 1);
    if (ver == 0xffffffffu || pin > ((ver >> 16) & 0xff))
        return -1;
    u32 lo = vector; /* fixed delivery, physical destination */
    if ((flags & 3) == 3)
        lo |= 1u << 13; /* active low */
    if (((flags >> 2) & 3) == 3)
        lo |= 1u << 15; /* level triggered */
    ioapic_write(base, 0x10 + 2 * pin + 1, dest_apic << 24);
    ioapic_write(base, 0x10 + 2 * pin, lo);
    return 0;
}

void ioapic_mask(u64 base, u32 gsi_base, u32 gsi)
{
    if (!base || gsi < gsi_base)
        return;
    u32 pin = gsi - gsi_base;
    ioapic_write(base, 0x10 + 2 * pin, ioapic_read(base, 0x10 + 2 * pin) | (1u << 16));
}
