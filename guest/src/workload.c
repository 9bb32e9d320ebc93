/*
 * Snapshot/restore workload (docs/snapshots.md). "work N" fills N MiB at WORK_BASE with a pattern that depends on
 * each page's address, then prints "work: count K" about every 100 ms with K = 1, 2, 3, ... until 'q' arrives on
 * the console. Each tick also checks the next WORK_CHECK_PAGES pages, so the whole area is re-verified all the time
 * without input: "work: verify ok pass P" after each full pass, "work: verify FAILED at ADDR" on a mismatch.
 * 'v' on the console verifies everything at once; "work verify" does the same outside the loop.
 *
 * Guest kernel code may be emulated instruction by instruction (nested PVM hosts), so each page is filled and
 * checked with one string instruction (rep stosq / repe scasq) rather than a C loop.
 */
#include "workload.h"
#include "bootinfo.h"
#include "console.h"
#include "lib.h"
#include "pages.h"
#include "timer.h"

#define WORK_BASE (16UL << 20)
#define WORK_LIMIT PAGES_REGION_START /* the page allocator (balloon, mem touch) starts there */
#define WORK_PAGE 4096UL
#define WORK_SEED 0x9e3779b97f4a7c15UL

/* Live in guest RAM, so they survive a snapshot with everything else. */
static u64 work_pages;
static u64 work_count;
static u64 work_next_check; /* page index the rolling check continues from */
static u64 work_pass;

#define WORK_CHECK_PAGES 64

static u64 page_value(u64 addr) { return (addr >> 12) * WORK_SEED ^ 0x4b564d5053UL; /* "KVMPS" */ }

static void fill_page_with(u64 addr, u64 value)
{
    u64 count = WORK_PAGE / 8;
    void *dst = (void *)(uptr)addr;
    __asm__ volatile("rep stosq" : "+D"(dst), "+c"(count) : "a"(value) : "memory");
}

static void fill_page(u64 addr) { fill_page_with(addr, page_value(addr)); }

/* Returns 0 when every qword of the page holds value. */
static int check_page_for(u64 addr, u64 value)
{
    u64 count = WORK_PAGE / 8;
    const void *p = (const void *)(uptr)addr;
    u8 differs;
    __asm__ volatile("repe scasq\n\tsetne %2" : "+D"(p), "+c"(count), "=qm"(differs) : "a"(value) : "memory", "cc");
    return differs;
}

static int check_page(u64 addr) { return check_page_for(addr, page_value(addr)); }

static void work_verify(void)
{
    if (!work_pages) {
        kprintf("work: nothing to verify (run 'work MiB' first)\n");
        return;
    }
    for (u64 i = 0; i < work_pages; i++) {
        u64 addr = WORK_BASE + i * WORK_PAGE;
        if (check_page(addr)) {
            kprintf("work: verify FAILED at 0x%lx\n", addr);
            return;
        }
    }
    kprintf("work: verify ok %lu MiB\n", work_pages * WORK_PAGE >> 20);
}

static void work_fill(u64 mib)
{
    u64 end = WORK_BASE + (mib << 20);
    if (mib == 0 || end > WORK_LIMIT || end > bootinfo_usable_bytes()) {
        kprintf("work: %lu MiB does not fit between 16 and %lu MiB in usable RAM\n", mib, (u64)(WORK_LIMIT >> 20));
        return;
    }
    work_pages = 0;
    for (u64 addr = WORK_BASE; addr < end; addr += WORK_PAGE)
        fill_page(addr);
    work_pages = (end - WORK_BASE) / WORK_PAGE;
    work_count = 0;
    work_next_check = 0;
    work_pass = 0;
    kprintf("work: filled %lu MiB\n", mib);
}

/* Checks the next few pages; returns -1 after a mismatch. */
static int work_check_some(void)
{
    for (int i = 0; i < WORK_CHECK_PAGES; i++) {
        u64 addr = WORK_BASE + work_next_check * WORK_PAGE;
        if (check_page(addr)) {
            kprintf("work: verify FAILED at 0x%lx\n", addr);
            return -1;
        }
        if (++work_next_check == work_pages) {
            work_next_check = 0;
            work_pass++;
            kprintf("work: verify ok pass %lu (%lu MiB)\n", work_pass, work_pages * WORK_PAGE >> 20);
        }
    }
    return 0;
}

static void work_loop(void)
{
    for (;;) {
        work_count++;
        kprintf("work: count %lu\n", work_count);
        if (work_check_some())
            return;
        u64 until = timer_ticks() + timer_us_to_ticks(100000);
        while (timer_ticks() < until) {
            u8 c;
            if (!console_try_getc(&c))
                continue;
            if (c == 'v')
                work_verify();
            else if (c == 'q') {
                kprintf("work: stopped at %lu\n", work_count);
                return;
            }
        }
    }
}

/*
 * "work dirty N" (live migration, docs/migration.md): rewrites N MiB over and over, as fast as it can, each pass
 * with the next generation: page i of pass G holds page_value + G. Pages before the cursor hold G, the others G-1,
 * so a rolling check knows what every page must hold: a page a migration lost or sent stale says
 * "work: verify FAILED at ADDR". "work: dirty pass G" after each pass; 'q' stops.
 */
#define DIRTY_BATCH 16

static u64 dirty_pages, dirty_gen, dirty_next, dirty_check;

static void work_dirty(u64 mib)
{
    u64 end = WORK_BASE + (mib << 20);
    if (mib == 0 || end > WORK_LIMIT || end > bootinfo_usable_bytes()) {
        kprintf("work: %lu MiB does not fit between 16 and %lu MiB in usable RAM\n", mib, (u64)(WORK_LIMIT >> 20));
        return;
    }
    dirty_pages = (end - WORK_BASE) / WORK_PAGE;
    for (u64 i = 0; i < dirty_pages; i++)
        fill_page_with(WORK_BASE + i * WORK_PAGE, page_value(WORK_BASE + i * WORK_PAGE));
    dirty_gen = 1;
    dirty_next = 0;
    dirty_check = 0;
    kprintf("work: dirtying %lu MiB\n", mib);
    for (;;) {
        for (int i = 0; i < DIRTY_BATCH; i++) {
            u64 addr = WORK_BASE + dirty_next * WORK_PAGE;
            fill_page_with(addr, page_value(addr) + dirty_gen);
            if (++dirty_next == dirty_pages) {
                kprintf("work: dirty pass %lu\n", dirty_gen);
                dirty_next = 0;
                dirty_gen++;
            }
        }
        for (int i = 0; i < DIRTY_BATCH; i++) {
            u64 addr = WORK_BASE + dirty_check * WORK_PAGE;
            u64 gen = dirty_check < dirty_next ? dirty_gen : dirty_gen - 1;
            if (check_page_for(addr, page_value(addr) + gen)) {
                kprintf("work: verify FAILED at 0x%lx (generation %lu)\n", addr, gen);
                return;
            }
            if (++dirty_check == dirty_pages)
                dirty_check = 0;
        }
        u8 c;
        if (console_try_getc(&c) && c == 'q') {
            kprintf("work: stopped at pass %lu\n", dirty_gen);
            return;
        }
    }
}

/* "A B" (one space) into two numbers; 0 on success. */
static int parse_two(char *s, u64 *a, u64 *b)
{
    char *sp = s;
    while (*sp && *sp != ' ')
        sp++;
    if (!*sp)
        return -1;
    *sp = 0;
    int bad = parse_u64(s, a) || parse_u64(sp + 1, b);
    *sp = ' ';
    return bad;
}

void cmd_work(char *arg)
{
    u64 mib, rate;
    if (!strcmp(arg, "verify"))
        work_verify();
    else if (!strncmp(arg, "dirty ", 6) && !parse_u64(arg + 6, &mib))
        work_dirty(mib);
    else if (!strncmp(arg, "udirty ", 7) && !parse_two(arg + 7, &mib, &rate)) {
        work_pages = 0; /* its code and state take the start of the area: nothing of a fill is left to verify */
        work_udirty(mib, rate);
    }
    else if (!parse_u64(arg, &mib)) {
        work_fill(mib);
        if (work_pages)
            work_loop();
    } else
        kprintf("usage: work MiB | work verify | work dirty MiB | work udirty MiB RATE_MiB_per_s (0: full speed)\n");
}
