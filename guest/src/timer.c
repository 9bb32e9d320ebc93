/* Delays. Loops always `pause` and read a clock so they are bounded in time, not instructions. */
#include "timer.h"
#include "io.h"

#define PM_TIMER_HZ 3579545ULL
#define PIT_HZ 1193182ULL

static u16 pm_port;
static u32 pm_mask;
static u32 pm_last;
static u64 pm_acc;
static u64 tsc_hz;

/* TSC frequency from hypervisor/CPUID leaves; 0 if unknown. */
static u64 tsc_hz_cpuid(void)
{
    u32 a, b, c, d;
    cpuid(1, 0, &a, &b, &c, &d);
    if (c & (1u << 31)) { /* hypervisor present: timing leaf 0x40000010 (kHz) */
        cpuid(0x40000000, 0, &a, &b, &c, &d);
        if (a >= 0x40000010) {
            cpuid(0x40000010, 0, &a, &b, &c, &d);
            if (a)
                return (u64)a * 1000;
        }
    }
    cpuid(0, 0, &a, &b, &c, &d);
    u32 max = a;
    if (max >= 0x15) {
        cpuid(0x15, 0, &a, &b, &c, &d);
        if (a && b && c)
            return (u64)c * b / a;
    }
    if (max >= 0x16) {
        cpuid(0x16, 0, &a, &b, &c, &d);
        if (a & 0xffff)
            return (u64)(a & 0xffff) * 1000000;
    }
    return 0;
}

/* Calibrate the TSC against PIT channel 2 over 10 ms; 0 if there is no PIT. */
static u64 tsc_hz_pit(void)
{
    const u32 latch = (u32)(PIT_HZ / 100);
    outb(0x61, (u8)((inb(0x61) & ~0x02) | 0x01)); /* gate on, speaker off */
    outb(0x43, 0xb0);                             /* ch2, lo/hi, mode 0, binary */
    outb(0x42, latch & 0xff);
    outb(0x42, latch >> 8);
    u64 t0 = rdtsc();
    u32 loops = 0;
    while (!(inb(0x61) & 0x20) && ++loops < 2000000)
        cpu_pause();
    u64 t1 = rdtsc();
    u64 hz = (t1 - t0) * 100;
    if (hz < 50000000ULL || loops >= 2000000) /* < 50 MHz: no PIT (bit already set) */
        return 0;
    return hz;
}

void timer_init(u16 pm_tmr_port, int pm_tmr_32bit)
{
    if (pm_tmr_port) {
        u32 v = inl(pm_tmr_port);
        if (v != 0xffffffffu) {
            pm_port = pm_tmr_port;
            pm_mask = pm_tmr_32bit ? 0xffffffffu : 0x00ffffffu;
            pm_last = v & pm_mask;
            return;
        }
    }
    tsc_hz = tsc_hz_cpuid();
    if (!tsc_hz)
        tsc_hz = tsc_hz_pit();
    if (!tsc_hz)
        tsc_hz = 3000000000ULL; /* unknown: assume fast, so delays err on the long side */
}

u64 timer_ticks(void)
{
    if (pm_port) {
        u32 v = inl(pm_port) & pm_mask;
        pm_acc += (v - pm_last) & pm_mask;
        pm_last = v;
        return pm_acc;
    }
    return rdtsc();
}

u64 timer_hz(void)
{
    return pm_port ? PM_TIMER_HZ : tsc_hz;
}

u64 timer_us_to_ticks(u64 us)
{
    return us * timer_hz() / 1000000ULL + 1;
}

void udelay(u64 us)
{
    u64 t0 = timer_ticks(), n = timer_us_to_ticks(us);
    while (timer_ticks() - t0 < n)
        cpu_pause();
}

const char *timer_source(void)
{
    return pm_port ? "pmtimer" : "tsc";
}

/* TSC ticks per second: the known frequency when the TSC is the time source, else measured against the PM timer
   over 50 ms (once; the two reads of each pair are a few exits apart, well under 0.1 % of that). */
u64 timer_tsc_hz(void)
{
    static u64 measured;
    if (!pm_port)
        return tsc_hz;
    if (!measured) {
        u64 t0 = timer_ticks(), c0 = rdtsc();
        while (timer_ticks() - t0 < PM_TIMER_HZ / 20)
            cpu_pause();
        u64 c1 = rdtsc(), t1 = timer_ticks();
        measured = (c1 - c0) * PM_TIMER_HZ / (t1 - t0);
    }
    return measured;
}
