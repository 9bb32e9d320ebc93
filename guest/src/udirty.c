/*
 * "work udirty MiB RATE" (live migration benchmarks and tests, docs/migration.md): dirties MiB at 18 MiB at RATE MiB/s
 * (0: as fast as it goes) from ring 3, which hosts that emulate guest kernel code still run natively. One qword per
 * 4 KiB page (every page it dirties is touched; KVM's dirty log counts pages), holding the pass number (generation)
 * G: pages before the cursor hold G, the others G-1, so a rolling check here in the kernel knows what every page must
 * hold, and catches a page a migration lost or sent stale ("work: verify FAILED at ADDR"). The ring-3 loop
 * (udirty_loop.S) runs in slices of 100 ms; between two the kernel checks 256 pages, reads the console ('q' stops,
 * 'v' verifies everything) and about every second prints "work: udirty rate N KiB/s pass G", the rate it achieved.
 * The first 2 MiB of the work area (16 MiB) hold the loop's code, its state and its stack.
 */
#include "bootinfo.h"
#include "console.h"
#include "io.h"
#include "lib.h"
#include "pages.h"
#include "timer.h"
#include "usermode.h"
#include "workload.h"

#define USER_AREA (16UL << 20)
#define USER_AREA_SIZE (2UL << 20)
#define UDIRTY_BASE (USER_AREA + USER_AREA_SIZE)
#define UDIRTY_LIMIT (3UL << 30) /* RAM above 3 GiB continues at 4 GiB, out of the guest's identity map's reach */
#define SLICE_MS 100
#define CHECK_PAGES 256

/* Layout shared with udirty_loop.S (ST_* offsets). */
struct udirty_state {
    u64 base, pages, tsc_per_page, slice_start, slice_end, next_due, max_lag, cursor, gen, written;
};

extern const u8 udirty_user[], udirty_user_end[];

static int udirty_check_some(struct udirty_state *st, u64 *check, u64 *pass)
{
    for (int i = 0; i < CHECK_PAGES; i++) {
        u64 addr = st->base + (*check << 12);
        u64 want = *check < st->cursor ? st->gen : st->gen - 1; /* 0: not written yet in the first pass */
        u64 got = *(volatile u64 *)(uptr)addr;
        if (want && got != want) {
            kprintf("work: verify FAILED at 0x%lx (generation %lu, found %lu)\n", addr, want, got);
            return -1;
        }
        if (++*check == st->pages) {
            *check = 0;
            ++*pass;
            if (st->gen > 1)
                kprintf("work: udirty verify ok pass %lu (%lu MiB)\n", *pass, st->pages >> 8);
        }
    }
    return 0;
}

static int udirty_verify_all(struct udirty_state *st)
{
    u64 check = 0, pass = 0;
    while (!pass)
        if (udirty_check_some(st, &check, &pass))
            return -1;
    kprintf("work: udirty verify ok %lu MiB\n", st->pages >> 8);
    return 0;
}

void work_udirty(u64 mib, u64 rate_mib_s)
{
    u64 end = UDIRTY_BASE + (mib << 20);
    u64 ram = bootinfo_usable_bytes();
    if (mib == 0 || mib > (UDIRTY_LIMIT >> 20) || end > ram || end > UDIRTY_LIMIT) {
        kprintf("work: udirty %lu MiB does not fit between %lu MiB and the end of usable RAM (%lu MiB)\n", mib,
                UDIRTY_BASE >> 20, (ram < UDIRTY_LIMIT ? ram : UDIRTY_LIMIT) >> 20);
        return;
    }
    if (end > PAGES_REGION_START && pages_handed_out()) {
        kprintf("work: udirty %lu MiB would reach the %lu pages the balloon holds above %lu MiB; at most %lu MiB\n", mib,
                pages_handed_out(), (u64)(PAGES_REGION_START >> 20), (u64)((PAGES_REGION_START - UDIRTY_BASE) >> 20));
        return;
    }
    if (rate_mib_s > (1UL << 20)) {
        kprintf("work: udirty rate %lu MiB/s is beyond reach; 0 means as fast as it goes\n", rate_mib_s);
        return;
    }
    u64 tsc_hz = timer_tsc_hz();
    if (user_init() || user_map(USER_AREA, end))
        return;
    memcpy((void *)(uptr)USER_AREA, udirty_user, (usize)(udirty_user_end - udirty_user));
    struct udirty_state *st = (struct udirty_state *)(uptr)(USER_AREA + 4096);
    memset(st, 0, sizeof(*st));
    st->base = UDIRTY_BASE;
    st->pages = mib << 8;
    st->tsc_per_page = rate_mib_s ? tsc_hz / (rate_mib_s << 8) : 0;
    st->max_lag = tsc_hz / 20; /* 50 ms of backlog is caught up (a loaded host deschedules the vCPU); a longer stall is not */
    st->gen = 1;
    st->next_due = rdtsc();
    if (rate_mib_s)
        kprintf("work: udirty %lu MiB at %lu MiB/s from ring 3 (TSC %lu kHz)\n", mib, rate_mib_s, tsc_hz / 1000);
    else
        kprintf("work: udirty %lu MiB as fast as it goes from ring 3 (TSC %lu kHz)\n", mib, tsc_hz / 1000);

    u64 check = 0, pass = 0;
    u64 report_at = rdtsc(), report_written = 0, kernel_tsc = 0, left_user = 0;
    for (;;) {
        st->slice_start = rdtsc();
        if (left_user && st->slice_start > left_user)
            kernel_tsc += st->slice_start - left_user;
        st->slice_end = st->slice_start + tsc_hz / 1000 * SLICE_MS;
        user_enter(USER_AREA, USER_AREA + USER_AREA_SIZE, (u64)(uptr)st);
        u64 now = rdtsc();
        left_user = now;
        if (now < report_at) { /* the TSC went back (a migration): measure afresh */
            report_at = now;
            report_written = st->written;
            kernel_tsc = 0;
        } else if (now - report_at >= tsc_hz) {
            u64 kib_s = (st->written - report_written) * 4 * tsc_hz / (now - report_at);
            kprintf("work: udirty rate %lu KiB/s pass %lu (kernel %lu%%)\n", kib_s, st->gen, kernel_tsc * 100 / (now - report_at));
            report_at = now;
            report_written = st->written;
            kernel_tsc = 0;
        }
        if (udirty_check_some(st, &check, &pass))
            return;
        u8 c;
        if (console_try_getc(&c)) {
            if (c == 'v' && udirty_verify_all(st))
                return;
            if (c == 'q') {
                kprintf("work: udirty stopped at pass %lu, %lu pages written\n", st->gen, st->written);
                return;
            }
        }
    }
}
