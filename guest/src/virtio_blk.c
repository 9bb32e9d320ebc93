/* virtio-blk (virtio device type 2) driver: one queue, one request at a time, polled.
   A request is header (device-readable, 16 bytes) + optional data + status byte (device-writable).

   Test pattern of `blk write SECTOR COUNT SEED`: 32-bit little-endian words, x0 = SEED * 2654435761 + 12345,
   then x = x * 1664525 + 1013904223 per word (first word written is x1); the sequence runs on across the
   whole transfer. `blk read` prints the CRC-32 (IEEE, as zlib) of the bytes read. */
#include "virtio_blk.h"
#include "lib.h"
#include "virtio.h"

#define VIRTIO_ID_BLOCK 2

#define VIRTIO_BLK_F_RO (1ULL << 5)
#define VIRTIO_BLK_F_FLUSH (1ULL << 9)
#define VIRTIO_BLK_F_DISCARD (1ULL << 13)
#define VIRTIO_BLK_F_WRITE_ZEROES (1ULL << 14)

#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_T_DISCARD 11
#define VIRTIO_BLK_T_WRITE_ZEROES 13
#define VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP 1

#define BLK_TIMEOUT_US 10000000 /* host I/O (qcow2 allocation, fdatasync) may take a while */

struct blk_req_hdr { u32 type; u32 reserved; u64 sector; };
struct blk_dwz_seg { u64 sector; u32 num_sectors; u32 flags; };

static struct virtq blk_vq;
static struct virtio_dev blk_dev;
static int blk_ready;
static u64 blk_features;
static struct blk_req_hdr blk_hdr __attribute__((aligned(16)));
static struct blk_dwz_seg blk_seg __attribute__((aligned(16)));
static volatile u8 blk_status;
static u8 blk_buf[BLK_CHUNK_SECTORS * 512] __attribute__((aligned(4096)));
static u32 crc_table[256];

/* Brings the driver up on the disk in `slot` (0: the first virtio-blk device on bus 0). A driver that serves another
   disk resets that one first: the driver drives one disk at a time, and a reset device holds no guest buffers. */
static int blk_init(u8 slot)
{
    if (blk_ready && (!slot || blk_dev.pci.dev == slot))
        return 0;
    if (blk_ready) {
        virtio_reset(&blk_dev);
        blk_ready = 0;
    }
    if (slot ? virtio_find_slot(&blk_dev, VIRTIO_ID_BLOCK, slot) : virtio_find(&blk_dev, VIRTIO_ID_BLOCK)) {
        if (slot)
            kprintf("blk: no virtio-blk device in slot %02x\n", slot);
        else
            kprintf("blk: no virtio-blk device\n");
        return -1;
    }
    u64 want = VIRTIO_BLK_F_RO | VIRTIO_BLK_F_FLUSH | VIRTIO_BLK_F_DISCARD | VIRTIO_BLK_F_WRITE_ZEROES;
    if (virtio_negotiate(&blk_dev, want) || virtio_queue_setup(&blk_dev, &blk_vq, 0)) {
        kprintf("blk: device setup failed (status 0x%x)\n", virtio_status(&blk_dev));
        return -1;
    }
    /* Features 0-31 the device offers (all the ones below 32 we use were asked for, so offered = accepted). */
    *(volatile u32 *)(uptr)(blk_dev.common + 0x00) = 0;
    blk_features = *(volatile u32 *)(uptr)(blk_dev.common + 0x04) & want;
    virtio_driver_ok(&blk_dev);
    blk_ready = 1;
    return 0;
}

int blk_attach(void) { return blk_ready ? 1 : blk_init(0) == 0 ? 2 : 0; }

int blk_release_slot(u8 slot)
{
    if (!blk_ready || blk_dev.pci.bus != 0 || blk_dev.pci.dev != slot)
        return 0;
    virtio_reset(&blk_dev);
    blk_ready = 0; /* the next command finds whatever virtio-blk device is there then */
    return 1;
}

/* Posts header [+ data] + status and waits. Returns the status byte, or -1 (message printed) if the device did not answer. */
static int blk_request(u32 type, u64 sector, void *data, u32 len, int data_writable)
{
    blk_hdr.type = type;
    blk_hdr.reserved = 0;
    blk_hdr.sector = sector;
    blk_status = 0xff;
    int d = 0;
    blk_vq.desc[d].addr = (u64)(uptr)&blk_hdr;
    blk_vq.desc[d].len = sizeof(blk_hdr);
    blk_vq.desc[d].flags = VIRTQ_DESC_F_NEXT;
    blk_vq.desc[d].next = d + 1;
    d++;
    if (len) {
        blk_vq.desc[d].addr = (u64)(uptr)data;
        blk_vq.desc[d].len = len;
        blk_vq.desc[d].flags = VIRTQ_DESC_F_NEXT | (data_writable ? VIRTQ_DESC_F_WRITE : 0);
        blk_vq.desc[d].next = d + 1;
        d++;
    }
    blk_vq.desc[d].addr = (u64)(uptr)&blk_status;
    blk_vq.desc[d].len = 1;
    blk_vq.desc[d].flags = VIRTQ_DESC_F_WRITE;
    blk_vq.desc[d].next = 0;
    virtq_submit(&blk_vq, 0);
    long got = virtq_wait_used(&blk_vq, BLK_TIMEOUT_US);
    if (got < 0 || (virtio_status(&blk_dev) & VIRTIO_STATUS_NEEDS_RESET)) {
        kprintf("blk: no answer (status 0x%x)\n", virtio_status(&blk_dev));
        blk_ready = 0; /* the next command resets and re-initialises the device */
        return -1;
    }
    return blk_status;
}

/* Returns 0 when the request succeeded; prints "blk: error <status>" otherwise. */
static int blk_check(int st)
{
    if (st == 0)
        return 0;
    if (st > 0)
        kprintf("blk: error %d\n", st);
    return -1;
}

static void crc_init(void)
{
    if (crc_table[1])
        return;
    for (u32 i = 0; i < 256; i++) {
        u32 c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

static u32 crc_update(u32 crc, const u8 *p, u64 n)
{
    for (u64 i = 0; i < n; i++)
        crc = crc_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return crc;
}

static u64 blk_capacity(void)
{
    u32 lo = *(volatile u32 *)(uptr)blk_dev.device_cfg;
    u32 hi = *(volatile u32 *)(uptr)(blk_dev.device_cfg + 4);
    return (u64)hi << 32 | lo;
}

static void blk_info(void)
{
    static char id[21] __attribute__((aligned(16)));
    memset(id, 0, sizeof(id));
    if (blk_check(blk_request(VIRTIO_BLK_T_GET_ID, 0, id, 20, 1)))
        return;
    for (int i = 0; i < 20 && id[i]; i++)
        if (id[i] < 0x21 || id[i] > 0x7e)
            id[i] = '_';
    kprintf("blk: capacity %lu serial %s ro %d slot %02x\n", blk_capacity(), id[0] ? id : "-", (blk_features & VIRTIO_BLK_F_RO) ? 1 : 0, blk_dev.pci.dev);
}

static void blk_write(u64 sector, u64 count, u64 seed)
{
    u32 x = (u32)seed * 2654435761u + 12345u;
    u64 done = 0;
    while (done < count) {
        u64 n = count - done < BLK_CHUNK_SECTORS ? count - done : BLK_CHUNK_SECTORS;
        u32 *w = (u32 *)blk_buf;
        for (u64 i = 0; i < n * 128; i++) {
            x = x * 1664525u + 1013904223u;
            w[i] = x;
        }
        if (blk_check(blk_request(VIRTIO_BLK_T_OUT, sector + done, blk_buf, (u32)(n * 512), 0)))
            return;
        done += n;
    }
    kprintf("blk: wrote %lu\n", done);
}

static void blk_read(u64 sector, u64 count)
{
    crc_init();
    u32 crc = 0xffffffffu;
    u64 done = 0;
    while (done < count) {
        u64 n = count - done < BLK_CHUNK_SECTORS ? count - done : BLK_CHUNK_SECTORS;
        if (blk_check(blk_request(VIRTIO_BLK_T_IN, sector + done, blk_buf, (u32)(n * 512), 1)))
            return;
        crc = crc_update(crc, blk_buf, n * 512);
        done += n;
    }
    kprintf("blk: crc32 %08x\n", crc ^ 0xffffffffu);
}

/* N sequential 4 KiB reads, one request each, wrapping at the end of the disk: the benchmark's block load. */
static void blk_bench(u64 n)
{
    u64 sectors = blk_capacity();
    if (sectors < 8) {
        kprintf("blk: disk too small for bench\n");
        return;
    }
    for (u64 i = 0; i < n; i++)
        if (blk_check(blk_request(VIRTIO_BLK_T_IN, (i * 8) % (sectors - sectors % 8), blk_buf, 4096, 1)))
            return;
    kprintf("blk: bench %lu\n", n);
}

static void blk_discard_zero(u32 type, u64 sector, u64 count, u32 flags)
{
    blk_seg.sector = sector;
    blk_seg.num_sectors = (u32)count;
    blk_seg.flags = flags;
    if (blk_check(blk_request(type, 0, &blk_seg, sizeof(blk_seg), 0)))
        return;
    kprintf(type == VIRTIO_BLK_T_DISCARD ? "blk: discarded %lu\n" : "blk: zeroed %lu\n", count);
}

/* Splits off the next space-separated word of *s. */
static char *next_word(char **s)
{
    char *p = *s;
    while (*p == ' ')
        p++;
    char *w = p;
    while (*p && *p != ' ')
        p++;
    if (*p)
        *p++ = 0;
    *s = p;
    return w;
}

static void blk_usage(void)
{
    kprintf("usage: blk [@SLOT] info | write SECTOR COUNT SEED | read SECTOR COUNT | flush | discard SECTOR COUNT | zero SECTOR COUNT [unmap] | bench N\n");
}

void cmd_blk(char *args)
{
    char *sub = next_word(&args);
    /* `@SS`: the disk in PCI slot SS (hex, bus 0); it stays selected for the commands after. */
    u8 slot = 0;
    if (sub[0] == '@') {
        u64 s = 0;
        int digits = 0;
        for (char *c = sub + 1; *c; c++, digits++) {
            int h = *c >= '0' && *c <= '9' ? *c - '0' : *c >= 'a' && *c <= 'f' ? *c - 'a' + 10 : *c >= 'A' && *c <= 'F' ? *c - 'A' + 10 : -1;
            if (h < 0) { digits = 0; break; }
            s = s * 16 + (u64)h;
        }
        if (!digits || digits > 2 || s < 1 || s > 31) {
            blk_usage();
            return;
        }
        slot = (u8)s;
        sub = next_word(&args);
    }
    u64 v[3] = { 0, 0, 0 };
    int nargs = 0;
    char *unmap = 0;
    for (char *w = next_word(&args); *w; w = next_word(&args)) {
        if (nargs < 3 && !parse_u64(w, &v[nargs]))
            nargs++;
        else if (!strcmp(w, "unmap") && !unmap)
            unmap = w;
        else {
            blk_usage();
            return;
        }
    }
    int need = !strcmp(sub, "info") || !strcmp(sub, "flush") ? 0
             : !strcmp(sub, "bench") ? 1
             : !strcmp(sub, "write") ? 3
             : !strcmp(sub, "read") || !strcmp(sub, "discard") || !strcmp(sub, "zero") ? 2 : -1;
    if (need < 0 || nargs != need || (unmap && strcmp(sub, "zero"))) {
        blk_usage();
        return;
    }
    if (need >= 2 && (v[1] == 0 || v[1] > 0xffffffffu)) {
        blk_usage();
        return;
    }
    if (blk_init(slot))
        return;

    if (!strcmp(sub, "info"))
        blk_info();
    else if (!strcmp(sub, "bench"))
        blk_bench(v[0]);
    else if (!strcmp(sub, "write"))
        blk_write(v[0], v[1], v[2]);
    else if (!strcmp(sub, "read"))
        blk_read(v[0], v[1]);
    else if (!strcmp(sub, "flush")) {
        if (!blk_check(blk_request(VIRTIO_BLK_T_FLUSH, 0, 0, 0, 0)))
            kprintf("blk: flushed\n");
    } else if (!strcmp(sub, "discard"))
        blk_discard_zero(VIRTIO_BLK_T_DISCARD, v[0], v[1], 0);
    else
        blk_discard_zero(VIRTIO_BLK_T_WRITE_ZEROES, v[0], v[1], unmap ? VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP : 0);
}
