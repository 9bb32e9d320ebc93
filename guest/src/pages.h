/* A tiny physical page allocator over usable RAM from 64 MiB up (below 4 GiB, which the guest maps), for the
   balloon driver and `mem touch`. 16-64 MiB is the `work` workload's area (workload.c): a balloon inflated while the
   workload runs must not hand out pages the workload keeps its pattern in. Free pages are a LIFO stack of frame numbers (kept at the start of the region)
   plus a bump pointer over never-used pages, so the pages handed out next are the ones freed last. */
#ifndef KVMPS_PAGES_H
#define KVMPS_PAGES_H

#include "types.h"

#define PAGE_SIZE 4096
#define PAGES_REGION_START (64ULL << 20)

/* Finds the region in the e820 map (once). Returns 0 on success. */
int pages_init(void);
/* Physical address of a free page (contents undefined), or 0 if none is left. */
u64 page_alloc(void);
void page_free(u64 addr);
u64 pages_free_bytes(void);
u64 pages_total_bytes(void);
/* Pages page_alloc handed out and not freed (0 before pages_init). */
u64 pages_handed_out(void);
/* Writes one byte into each of the next `count` pages page_alloc would return (the pages stay free);
   returns how many pages it touched. */
u64 pages_touch_free(u64 count);

/* A stack of page frame numbers, stored in pages taken from the allocator. */
struct pfn_chunk;
struct pfn_list {
    struct pfn_chunk *top;
    u64 count;
};
/* Returns 0 on success, -1 if no page was left for bookkeeping. */
int pfn_list_push(struct pfn_list *l, u32 pfn);
/* Returns 0 and the frame in *pfn, or -1 if the list is empty. */
int pfn_list_pop(struct pfn_list *l, u32 *pfn);

#endif
