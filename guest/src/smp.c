/* SMP bring-up. APs run trampoline.S -> ap_entry64 (entry.S) -> ap_main, then halt forever. */
#include "smp.h"
#include "acpi.h"
#include "apic.h"
#include "idt.h"
#include "io.h"
#include "layout.h"
#include "lib.h"
#include "mptable.h"
#include "timer.h"

extern const u8 trampoline_start[], trampoline_end[];
extern const u32 trampoline_cr3_offset;
extern volatile u32 ap_online; /* incremented by each AP with lock xadd (entry.S) */

#define AP_WAIT_US 200000   /* total time allowed for all APs to check in */

static u32 online = 1;

void ap_main(u32 index)
{
    (void)index;
    idt_load();
    halt_forever();
}

static u32 load_ap_list(u32 *ids, u32 max, u32 bsp)
{
    u32 n = 0;
    if (acpi.have_madt) {
        for (u32 i = 0; i < acpi.napic_ids && n < max; i++)
            if (acpi.apic_ids[i] != bsp && acpi.apic_ids[i] < 0xff)
                ids[n++] = acpi.apic_ids[i];
    } else {
        for (u32 i = 0; i < mp.napic_ids && n < max; i++)
            if (mp.apic_ids[i] != bsp)
                ids[n++] = mp.apic_ids[i];
    }
    return n;
}

u32 smp_boot(void)
{
    static u32 ids[256];
    u32 bsp = lapic_id();
    u32 n = load_ap_list(ids, ARRAY_SIZE(ids), bsp);
    online = 1;
    if (!n)
        return online;

    u8 *t = (u8 *)(uptr)TRAMPOLINE_BASE;
    memcpy(t, trampoline_start, (usize)(trampoline_end - trampoline_start));
    *(u32 *)(t + trampoline_cr3_offset) = (u32)read_cr3();
    __asm__ volatile("mfence" ::: "memory");

    /* INIT to all, one 10 ms wait, then two rounds of SIPI (MP spec / SDM sequence, batched). */
    for (u32 i = 0; i < n; i++)
        lapic_send_ipi(ids[i], ICR_INIT | ICR_LEVEL_ASSERT);
    udelay(10000);
    const u32 sipi = ICR_STARTUP | (TRAMPOLINE_BASE >> 12);
    for (u32 i = 0; i < n; i++)
        lapic_send_ipi(ids[i], sipi);
    udelay(200);
    if (ap_online < n) {
        for (u32 i = 0; i < n; i++)
            lapic_send_ipi(ids[i], sipi);
    }

    u64 t0 = timer_ticks(), limit = timer_us_to_ticks(AP_WAIT_US);
    while (ap_online < n && timer_ticks() - t0 < limit)
        cpu_pause();
    online = 1 + ap_online;
    return online;
}

u32 smp_online(void)
{
    return 1 + ap_online;
}
