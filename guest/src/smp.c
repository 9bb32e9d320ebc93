/*
 * SMP bring-up and CPU hot-plug. APs run trampoline.S -> ap_entry64 (entry.S) -> ap_main, mark themselves online,
 * and idle (sti; hlt) until the BSP asks them to park (hot-remove): then they mark themselves parked and halt with
 * interrupts off, where only INIT (a later hot-add) gets them going again.
 */
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

#define AP_WAIT_US 200000   /* total time allowed for the APs to check in */
#define PARK_WAIT_US 100000 /* time allowed for an AP to park */

enum { CPU_OFF = 0, CPU_ONLINE = 1, CPU_PARKED = 2 };

/* Indexed by APIC ID. Written by the AP itself (state) or the BSP (park request). */
static volatile u8 cpu_state[MAX_AP_STACKS];
static volatile u8 park_request[MAX_AP_STACKS];
static int trampoline_ready;

void ap_main(u32 apic_id)
{
    idt_load();
    lapic_enable_local(); /* software-enable this CPU's LAPIC: the park IPI is a fixed interrupt */
    cpu_state[apic_id] = CPU_ONLINE;
    for (;;) {
        cli();
        if (park_request[apic_id])
            break;
        sti_hlt(); /* a VEC_PARK IPI wakes it; irq_dispatch sends the EOI */
    }
    cpu_state[apic_id] = CPU_PARKED;
    halt_forever();
}

static u32 load_ap_list(u32 *ids, u32 max, u32 bsp)
{
    u32 n = 0;
    if (acpi.have_madt) {
        for (u32 i = 0; i < acpi.napic_ids && n < max; i++)
            if (acpi.apic_ids[i] != bsp && acpi.apic_ids[i] < MAX_AP_STACKS)
                ids[n++] = acpi.apic_ids[i];
    } else {
        for (u32 i = 0; i < mp.napic_ids && n < max; i++)
            if (mp.apic_ids[i] != bsp)
                ids[n++] = mp.apic_ids[i];
    }
    return n;
}

static void prepare_trampoline(void)
{
    if (trampoline_ready)
        return;
    u8 *t = (u8 *)(uptr)TRAMPOLINE_BASE;
    memcpy(t, trampoline_start, (usize)(trampoline_end - trampoline_start));
    *(u32 *)(t + trampoline_cr3_offset) = (u32)read_cr3();
    __asm__ volatile("mfence" ::: "memory");
    trampoline_ready = 1;
}

static u32 count_online(const u32 *ids, u32 n)
{
    u32 c = 0;
    for (u32 i = 0; i < n; i++)
        c += cpu_state[ids[i]] == CPU_ONLINE;
    return c;
}

/* INIT to all, one 10 ms wait, then two rounds of SIPI (MP spec / SDM sequence, batched); waits for the check-ins.
 * Returns how many of them came online. */
static u32 start_aps(const u32 *ids, u32 n)
{
    prepare_trampoline();
    for (u32 i = 0; i < n; i++) {
        park_request[ids[i]] = 0;
        cpu_state[ids[i]] = CPU_OFF;
    }
    barrier();
    for (u32 i = 0; i < n; i++)
        lapic_send_ipi(ids[i], ICR_INIT | ICR_LEVEL_ASSERT);
    udelay(10000);
    const u32 sipi = ICR_STARTUP | (TRAMPOLINE_BASE >> 12);
    for (u32 i = 0; i < n; i++)
        lapic_send_ipi(ids[i], sipi);
    udelay(200);
    if (count_online(ids, n) < n) {
        for (u32 i = 0; i < n; i++)
            if (cpu_state[ids[i]] != CPU_ONLINE)
                lapic_send_ipi(ids[i], sipi);
    }
    u64 t0 = timer_ticks(), limit = timer_us_to_ticks(AP_WAIT_US);
    while (count_online(ids, n) < n && timer_ticks() - t0 < limit)
        cpu_pause();
    return count_online(ids, n);
}

u32 smp_boot(void)
{
    static u32 ids[MAX_AP_STACKS];
    u32 bsp = lapic_id();
    if (bsp < MAX_AP_STACKS)
        cpu_state[bsp] = CPU_ONLINE;
    u32 n = load_ap_list(ids, ARRAY_SIZE(ids), bsp);
    if (n)
        start_aps(ids, n);
    return smp_online();
}

int smp_start_cpu(u32 apic_id)
{
    if (apic_id >= MAX_AP_STACKS || apic_id == lapic_id())
        return -1;
    return start_aps(&apic_id, 1) == 1 ? 0 : -1;
}

int smp_park_cpu(u32 apic_id)
{
    if (apic_id >= MAX_AP_STACKS || apic_id == lapic_id())
        return -1;
    if (cpu_state[apic_id] != CPU_ONLINE)
        return 0; /* never started, or already parked: nothing runs there */
    park_request[apic_id] = 1;
    barrier();
    lapic_send_ipi(apic_id, ICR_LEVEL_ASSERT | VEC_PARK);
    u64 t0 = timer_ticks(), limit = timer_us_to_ticks(PARK_WAIT_US);
    while (cpu_state[apic_id] != CPU_PARKED && timer_ticks() - t0 < limit)
        cpu_pause();
    return cpu_state[apic_id] == CPU_PARKED ? 0 : -1;
}

int smp_cpu_online(u32 apic_id)
{
    return apic_id < MAX_AP_STACKS && cpu_state[apic_id] == CPU_ONLINE;
}

u32 smp_online(void)
{
    u32 n = 0;
    for (u32 i = 0; i < MAX_AP_STACKS; i++)
        n += cpu_state[i] == CPU_ONLINE;
    return n ? n : 1;
}
