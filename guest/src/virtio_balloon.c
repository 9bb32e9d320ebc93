/* virtio-balloon (virtio device type 5) driver: inflateq 0, deflateq 1, statsq 2; num_pages/actual in the device
   configuration. Pages come from pages.c; PFNs go to the device in batches of up to 256 per buffer. */
#include "virtio_balloon.h"
#include "io.h"
#include "lib.h"
#include "bootinfo.h"
#include "pages.h"
#include "virtio.h"

#define VIRTIO_ID_BALLOON 5
#define BALLOON_F_STATS_VQ (1ULL << 1)
#define BALLOON_F_DEFLATE_ON_OOM (1ULL << 2)
#define BALLOON_BATCH 256
#define CFG_NUM_PAGES 0
#define CFG_ACTUAL 4

#define S_SWAP_IN 0
#define S_SWAP_OUT 1
#define S_MEMFREE 4
#define S_MEMTOT 5
#define S_AVAIL 6

struct balloon_stat {
    u16 tag;
    u64 val;
} PACKED;

static struct virtio_dev bal_dev;
static struct virtq inflate_vq, deflate_vq, stats_vq;
static int bal_ready, stats_held;
static u32 pfn_buf[BALLOON_BATCH] __attribute__((aligned(64)));
static struct balloon_stat stats_buf[5] __attribute__((aligned(64)));
static struct pfn_list balloon_pages;

void cmd_mem_touch(u64 mib)
{
    if (pages_init()) {
        kprintf("mem: no usable RAM above 64 MiB\n");
        return;
    }
    u64 touched = pages_touch_free(mib * (1ULL << 20) / PAGE_SIZE);
    kprintf("mem: touched %lu KiB, free %lu KiB\n", touched * (PAGE_SIZE / 1024), pages_free_bytes() >> 10);
}

static int balloon_init(void)
{
    if (bal_ready)
        return 0;
    if (virtio_find(&bal_dev, VIRTIO_ID_BALLOON)) {
        kprintf("balloon: no virtio-balloon device\n");
        return -1;
    }
    if (pages_init()) {
        kprintf("balloon: no usable RAM above 64 MiB\n");
        return -1;
    }
    if (virtio_negotiate(&bal_dev, BALLOON_F_STATS_VQ | BALLOON_F_DEFLATE_ON_OOM) || virtio_queue_setup(&bal_dev, &inflate_vq, 0) ||
        virtio_queue_setup(&bal_dev, &deflate_vq, 1) || virtio_queue_setup(&bal_dev, &stats_vq, 2)) {
        kprintf("balloon: device setup failed (status 0x%x)\n", virtio_status(&bal_dev));
        return -1;
    }
    virtio_driver_ok(&bal_dev);
    stats_held = 0;
    bal_ready = 1;
    return 0;
}

/* Sends pfn_buf[0..n) on a queue and waits for the device. Returns 0 on success. */
static int balloon_send(struct virtq *vq, u32 n)
{
    vq->desc[0].addr = (u64)(uptr)pfn_buf;
    vq->desc[0].len = n * sizeof(u32);
    vq->desc[0].flags = 0;
    vq->desc[0].next = 0;
    virtq_submit(vq, 0);
    if (virtq_wait_used(vq, 1000000) < 0 || (virtio_status(&bal_dev) & VIRTIO_STATUS_NEEDS_RESET)) {
        kprintf("balloon: no answer (status 0x%x)\n", virtio_status(&bal_dev));
        bal_ready = 0;
        return -1;
    }
    return 0;
}

void cmd_balloon(void)
{
    if (balloon_init())
        return;
    u32 target = mmio_read32(bal_dev.device_cfg + CFG_NUM_PAGES);
    while (balloon_pages.count < target) {
        u32 n = 0;
        while (n < BALLOON_BATCH && balloon_pages.count < target) {
            u64 page = page_alloc();
            if (!page)
                break;
            *(volatile u8 *)(uptr)page = 0xba; /* touched before it goes (so the host sees RSS fall) */
            if (pfn_list_push(&balloon_pages, (u32)(page / PAGE_SIZE))) {
                page_free(page);
                break;
            }
            pfn_buf[n++] = (u32)(page / PAGE_SIZE);
        }
        if (n && balloon_send(&inflate_vq, n))
            return;
        if (n < BALLOON_BATCH && balloon_pages.count < target) {
            kprintf("balloon: out of guest memory\n");
            break;
        }
    }
    while (balloon_pages.count > target) {
        u32 n = 0;
        while (n < BALLOON_BATCH && balloon_pages.count > target && !pfn_list_pop(&balloon_pages, &pfn_buf[n]))
            n++;
        if (balloon_send(&deflate_vq, n))
            return;
        for (u32 i = 0; i < n; i++)
            page_free((u64)pfn_buf[i] * PAGE_SIZE);
    }
    mmio_write32(bal_dev.device_cfg + CFG_ACTUAL, (u32)balloon_pages.count);
    kprintf("balloon: actual %lu\n", balloon_pages.count);
}

void cmd_balloon_stats(void)
{
    if (balloon_init())
        return;
    if (stats_held) {
        /* The device keeps the buffer until it wants fresh numbers; then it shows up in the used ring. */
        if (virtq_wait_used(&stats_vq, 0) < 0) {
            kprintf("balloon: stats pending (the device has not asked for new ones)\n");
            return;
        }
        stats_held = 0;
    }
    u64 free = pages_free_bytes();
    stats_buf[0] = (struct balloon_stat){ S_SWAP_IN, 0 };
    stats_buf[1] = (struct balloon_stat){ S_SWAP_OUT, 0 };
    stats_buf[2] = (struct balloon_stat){ S_MEMFREE, free };
    stats_buf[3] = (struct balloon_stat){ S_MEMTOT, bootinfo_usable_bytes() };
    stats_buf[4] = (struct balloon_stat){ S_AVAIL, free };
    stats_vq.desc[0].addr = (u64)(uptr)stats_buf;
    stats_vq.desc[0].len = sizeof(stats_buf);
    stats_vq.desc[0].flags = 0;
    stats_vq.desc[0].next = 0;
    virtq_submit(&stats_vq, 0);
    stats_held = 1;
    kprintf("balloon: stats sent (free %lu KiB)\n", free >> 10);
}
