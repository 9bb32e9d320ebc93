/* Physical page allocator for the balloon driver and `mem touch`. */
#include "pages.h"
#include "bootinfo.h"

#define LIMIT_4G (4ULL << 30)

static u32 *free_stack;  /* frame numbers of freed pages; lives at the start of the region */
static u64 free_top;      /* entries on the stack */
static u64 bump, end;     /* [bump, end): pages never handed out */
static u64 total_pages;
static int ready;

int pages_init(void)
{
    if (ready)
        return 0;
    u64 best_start = 0, best_end = 0;
    for (u32 i = 0; i < boot_info.nmem; i++) {
        const struct mem_range *m = &boot_info.mem[i];
        if (m->type != E820_USABLE)
            continue;
        u64 s = m->addr, e = m->addr + m->size;
        if (s < PAGES_REGION_START)
            s = PAGES_REGION_START;
        if (e > LIMIT_4G)
            e = LIMIT_4G;
        s = (s + PAGE_SIZE - 1) & ~(u64)(PAGE_SIZE - 1);
        e &= ~(u64)(PAGE_SIZE - 1);
        if (e > s && e - s > best_end - best_start) {
            best_start = s;
            best_end = e;
        }
    }
    u64 pages = (best_end - best_start) / PAGE_SIZE;
    u64 meta = (pages * sizeof(u32) + PAGE_SIZE - 1) / PAGE_SIZE;
    if (pages <= meta + 1)
        return -1;
    free_stack = (u32 *)(uptr)best_start;
    bump = best_start + meta * PAGE_SIZE;
    end = best_end;
    total_pages = (end - bump) / PAGE_SIZE;
    free_top = 0;
    ready = 1;
    return 0;
}

u64 page_alloc(void)
{
    if (free_top)
        return (u64)free_stack[--free_top] * PAGE_SIZE;
    if (bump >= end)
        return 0;
    u64 a = bump;
    bump += PAGE_SIZE;
    return a;
}

void page_free(u64 addr)
{
    free_stack[free_top++] = (u32)(addr / PAGE_SIZE);
}

u64 pages_handed_out(void) { return ready ? total_pages - (free_top + (end - bump) / PAGE_SIZE) : 0; }
u64 pages_free_bytes(void) { return (free_top + (end - bump) / PAGE_SIZE) * PAGE_SIZE; }
u64 pages_total_bytes(void) { return total_pages * PAGE_SIZE; }

u64 pages_touch_free(u64 count)
{
    u64 done = 0;
    for (u64 i = free_top; i > 0 && done < count; i--, done++)
        *(volatile u8 *)(uptr)((u64)free_stack[i - 1] * PAGE_SIZE) = 0x5a;
    for (u64 a = bump; a < end && done < count; a += PAGE_SIZE, done++)
        *(volatile u8 *)(uptr)a = 0x5a;
    return done;
}

#define CHUNK_PFNS ((PAGE_SIZE - 16) / sizeof(u32))
struct pfn_chunk {
    struct pfn_chunk *next;
    u64 count;
    u32 pfn[CHUNK_PFNS];
};

int pfn_list_push(struct pfn_list *l, u32 pfn)
{
    if (!l->top || l->top->count == CHUNK_PFNS) {
        u64 page = page_alloc();
        if (!page)
            return -1;
        struct pfn_chunk *c = (struct pfn_chunk *)(uptr)page;
        c->next = l->top;
        c->count = 0;
        l->top = c;
    }
    l->top->pfn[l->top->count++] = pfn;
    l->count++;
    return 0;
}

int pfn_list_pop(struct pfn_list *l, u32 *pfn)
{
    if (!l->top)
        return -1;
    *pfn = l->top->pfn[--l->top->count];
    l->count--;
    if (!l->top->count) {
        struct pfn_chunk *c = l->top;
        l->top = c->next;
        page_free((u64)(uptr)c);
    }
    return 0;
}
