/* virtio-rng (virtio device type 4) driver: one queue, one device-writable buffer per request. */
#include "virtio_rng.h"
#include "lib.h"
#include "virtio.h"

#define VIRTIO_ID_RNG 4

static struct virtq rng_vq;
static struct virtio_dev rng_dev;
static int rng_ready;
static u8 rng_buf[RNG_MAX_BYTES] __attribute__((aligned(64)));

static int rng_init(void)
{
    if (rng_ready)
        return 0;
    if (virtio_find(&rng_dev, VIRTIO_ID_RNG)) {
        kprintf("rng: no virtio-rng device\n");
        return -1;
    }
    if (virtio_negotiate(&rng_dev, 0) || virtio_queue_setup(&rng_dev, &rng_vq, 0)) {
        kprintf("rng: device setup failed (status 0x%x)\n", virtio_status(&rng_dev));
        return -1;
    }
    virtio_driver_ok(&rng_dev);
    rng_ready = 1;
    return 0;
}

/* Posts one request: a device-writable buffer at addr/len. */
static void rng_post(u64 addr, u32 len)
{
    rng_vq.desc[0].addr = addr;
    rng_vq.desc[0].len = len;
    rng_vq.desc[0].flags = VIRTQ_DESC_F_WRITE;
    rng_vq.desc[0].next = 0;
    virtq_submit(&rng_vq, 0);
}

void cmd_rng(u64 n)
{
    if (n < 1 || n > RNG_MAX_BYTES) {
        kprintf("usage: rng N (1-%u)\n", RNG_MAX_BYTES);
        return;
    }
    if (rng_init())
        return;
    memset(rng_buf, 0, n);
    rng_post((u64)(uptr)rng_buf, (u32)n);
    long got = virtq_wait_used(&rng_vq, 1000000);
    if (got < 0 || (virtio_status(&rng_dev) & VIRTIO_STATUS_NEEDS_RESET)) {
        kprintf("rng: no answer (status 0x%x)\n", virtio_status(&rng_dev));
        rng_ready = 0;
        return;
    }
    static const char hex[] = "0123456789abcdef";
    char line[2 * RNG_MAX_BYTES + 1];
    for (long i = 0; i < got && i < (long)n; i++) {
        line[2 * i] = hex[rng_buf[i] >> 4];
        line[2 * i + 1] = hex[rng_buf[i] & 15];
    }
    line[2 * (got < (long)n ? got : (long)n)] = 0;
    kprintf("rng: %s\n", line);
    if ((u64)got == n)
        kprintf("rng: ok\n");
    else
        kprintf("rng: short read %ld of %lu\n", got, n);
}

void cmd_rng_bad(void)
{
    if (rng_init())
        return;
    /* A buffer far outside guest RAM: the device must refuse the chain and ask for a reset. */
    rng_post(0x7fff00000000ULL, 16);
    long got = virtq_wait_used(&rng_vq, 200000);
    u8 st = virtio_status(&rng_dev);
    kprintf("rngbad: used=%ld status=0x%x%s\n", got, st, (st & VIRTIO_STATUS_NEEDS_RESET) ? " needs_reset" : "");
    rng_ready = 0; /* the next rng command resets and re-initialises the device */
}
