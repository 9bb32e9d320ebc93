/* virtio-mem (virtio device type 24) driver: one request queue (guestq 0) with 24-byte requests and 10-byte
   responses; the device configuration tells the region, the block size and the requested size. The queue is
   polled; a change of the requested size arrives as the configuration-change MSI-X vector (VEC_VMEM), whose handler
   plugs or unplugs toward it as Linux's driver does. The `vmem` command does the same by hand and verifies. The guest
   maps only the low 4 GiB, so the pattern is written and checked only when the region lies below 4 GiB (the VMM
   puts it there when it fits). */
#include "virtio_mem.h"
#include "io.h"
#include "lib.h"
#include "virtio.h"
#include "apic.h"
#include "idt.h"
#include "layout.h"
#include "pci.h"

#define VIRTIO_ID_MEM 24
#define CFG_BLOCK_SIZE 0
#define CFG_ADDR 16
#define CFG_REGION_SIZE 24
#define CFG_USABLE_REGION_SIZE 32
#define CFG_PLUGGED_SIZE 40
#define CFG_REQUESTED_SIZE 48

#define VIRTIO_MEM_REQ_PLUG 0
#define VIRTIO_MEM_REQ_UNPLUG 1
#define VIRTIO_MEM_REQ_UNPLUG_ALL 2
#define VIRTIO_MEM_RESP_ACK 0
#define VIRTIO_MEM_RESP_NACK 1
#define VIRTIO_MEM_RESP_BUSY 2

#define VMEM_MAX_BLOCKS 8192     /* blocks the driver tracks: 16 GiB of 2 MiB blocks */
#define VMEM_RUN_BLOCKS 64       /* blocks per plug/unplug request */
#define VMEM_MAPPED_LIMIT (4ULL << 30)
#define VMEM_PAGE 4096ULL
#define VMEM_SEED 0x9e3779b97f4a7c15ULL

struct vmem_req {
    u16 type;
    u16 padding[3];
    u64 addr;
    u16 nb_blocks;
    u16 padding2[3];
} PACKED;

struct vmem_resp {
    u16 type;
    u16 padding[3];
    u16 state;
} PACKED;

static struct virtio_dev mem_dev;
static struct virtq mem_vq;
static int mem_ready;
static u64 block_size, region_addr, region_size, blocks;
static u8 plugged[VMEM_MAX_BLOCKS / 8];
static struct vmem_req req __attribute__((aligned(64)));
static struct vmem_resp resp __attribute__((aligned(64)));

static int is_plugged(u64 b) { return plugged[b / 8] >> (b % 8) & 1; }
static void set_plugged(u64 b, int on)
{
    if (on)
        plugged[b / 8] |= (u8)(1 << (b % 8));
    else
        plugged[b / 8] &= (u8)~(1 << (b % 8));
}

static u64 cfg64(u32 off)
{
    u64 v, again;
    do { /* two 32-bit halves: re-read until they agree (the host may change requested_size meanwhile) */
        v = mmio_read32(mem_dev.device_cfg + off) | (u64)mmio_read32(mem_dev.device_cfg + off + 4) << 32;
        again = mmio_read32(mem_dev.device_cfg + off) | (u64)mmio_read32(mem_dev.device_cfg + off + 4) << 32;
    } while (v != again);
    return v;
}

/* Sends one request; returns the response type, or -1 if the device did not answer. */
static int mem_request(u16 type, u64 addr, u16 nb_blocks)
{
    memset(&req, 0, sizeof(req));
    req.type = type;
    req.addr = addr;
    req.nb_blocks = nb_blocks;
    resp.type = 0xffff;
    mem_vq.desc[0] = (struct virtq_desc){ (u64)(uptr)&req, sizeof(req), VIRTQ_DESC_F_NEXT, 1 };
    mem_vq.desc[1] = (struct virtq_desc){ (u64)(uptr)&resp, sizeof(resp), VIRTQ_DESC_F_WRITE, 0 };
    virtq_submit(&mem_vq, 0);
    if (virtq_wait_used(&mem_vq, 1000000) < 0 || (virtio_status(&mem_dev) & VIRTIO_STATUS_NEEDS_RESET)) {
        kprintf("vmem: no answer (status 0x%x)\n", virtio_status(&mem_dev));
        mem_ready = 0;
        return -1;
    }
    return resp.type;
}

static int mem_init(void)
{
    if (mem_ready)
        return 0;
    if (virtio_find(&mem_dev, VIRTIO_ID_MEM) || !mem_dev.device_cfg) {
        kprintf("vmem: no virtio-mem device\n");
        return -1;
    }
    if (virtio_negotiate(&mem_dev, 0) || virtio_queue_setup(&mem_dev, &mem_vq, 0)) {
        kprintf("vmem: device setup failed (status 0x%x)\n", virtio_status(&mem_dev));
        return -1;
    }
    virtio_driver_ok(&mem_dev);
    block_size = cfg64(CFG_BLOCK_SIZE);
    region_addr = cfg64(CFG_ADDR);
    region_size = cfg64(CFG_USABLE_REGION_SIZE);
    if (!block_size || (block_size & (block_size - 1)) || region_size % block_size) {
        kprintf("vmem: bad configuration (block %lu, region %lu)\n", block_size, region_size);
        return -1;
    }
    blocks = region_size / block_size;
    if (blocks > VMEM_MAX_BLOCKS)
        blocks = VMEM_MAX_BLOCKS; /* the rest of the region stays unplugged */
    memset(plugged, 0, sizeof(plugged));
    mem_ready = 1;
    /* A driver that does not know what is plugged (after a reset) starts from nothing, as Linux does. */
    if (cfg64(CFG_PLUGGED_SIZE) && mem_request(VIRTIO_MEM_REQ_UNPLUG_ALL, 0, 0) != VIRTIO_MEM_RESP_ACK) {
        kprintf("vmem: unplug all failed\n");
        mem_ready = 0;
        return -1;
    }
    return 0;
}

static int block_mapped(u64 b) { return region_addr + (b + 1) * block_size <= VMEM_MAPPED_LIMIT; }

/* The value of the first and last qword of a page: depends on its address, so a page seen at the wrong place fails. */
static u64 page_value(u64 addr) { return (addr >> 12) * VMEM_SEED ^ 0x766d656dULL; /* "vmem" */ }

static void fill_block(u64 b)
{
    u64 start = region_addr + b * block_size;
    for (u64 p = start; p < start + block_size; p += VMEM_PAGE) {
        *(volatile u64 *)(uptr)p = page_value(p);
        *(volatile u64 *)(uptr)(p + VMEM_PAGE - 8) = ~page_value(p);
    }
}

/* Returns 0, or the address of the first page that does not hold its pattern. */
static u64 check_block(u64 b)
{
    u64 start = region_addr + b * block_size;
    for (u64 p = start; p < start + block_size; p += VMEM_PAGE)
        if (*(volatile u64 *)(uptr)p != page_value(p) || *(volatile u64 *)(uptr)(p + VMEM_PAGE - 8) != ~page_value(p))
            return p;
    return 0;
}

/* Plugs runs of unplugged blocks from the start of the region until `want` blocks are plugged (or the device says no). */
static int plug_toward(u64 want, u64 *have)
{
    for (u64 b = 0; b < blocks && *have < want;) {
        if (is_plugged(b)) {
            b++;
            continue;
        }
        u64 n = 0;
        while (b + n < blocks && !is_plugged(b + n) && n < VMEM_RUN_BLOCKS && *have + n < want)
            n++;
        int r = mem_request(VIRTIO_MEM_REQ_PLUG, region_addr + b * block_size, (u16)n);
        if (r == VIRTIO_MEM_RESP_NACK || r == VIRTIO_MEM_RESP_BUSY)
            return 0; /* requested_size changed meanwhile, or later: the next `vmem` tries again */
        if (r != VIRTIO_MEM_RESP_ACK) {
            kprintf("vmem: plug 0x%lx x %lu refused (%d)\n", region_addr + b * block_size, n, r);
            return -1;
        }
        for (u64 i = 0; i < n; i++) {
            set_plugged(b + i, 1);
            if (block_mapped(b + i))
                fill_block(b + i);
        }
        *have += n;
        b += n;
    }
    return 0;
}

/* Unplugs runs of plugged blocks from the end of the region until only `want` are plugged. */
static int unplug_toward(u64 want, u64 *have)
{
    for (u64 end = blocks; end > 0 && *have > want;) {
        if (!is_plugged(end - 1)) {
            end--;
            continue;
        }
        u64 n = 0;
        while (n < end && is_plugged(end - 1 - n) && n < VMEM_RUN_BLOCKS && *have - n > want)
            n++;
        u64 first = end - n;
        int r = mem_request(VIRTIO_MEM_REQ_UNPLUG, region_addr + first * block_size, (u16)n);
        if (r == VIRTIO_MEM_RESP_BUSY)
            return 0;
        if (r != VIRTIO_MEM_RESP_ACK) {
            kprintf("vmem: unplug 0x%lx x %lu refused (%d)\n", region_addr + first * block_size, n, r);
            return -1;
        }
        for (u64 i = 0; i < n; i++)
            set_plugged(first + i, 0);
        *have -= n;
        end = first;
    }
    return 0;
}

/* Plugs or unplugs toward the requested size. Interrupts off: the MSI-X handler and the `vmem` command share the
   queue, and a configuration change that arrives meanwhile waits in the LAPIC until this is done. */
static int sync_to_requested(u64 *have)
{
    u64 flags;
    __asm__ volatile("pushfq; popq %0; cli" : "=r"(flags) : : "memory");
    *have = 0;
    for (u64 b = 0; b < blocks; b++)
        *have += (u64)is_plugged(b);
    u64 want = cfg64(CFG_REQUESTED_SIZE) / block_size;
    if (want > blocks)
        want = blocks;
    int r = want > *have ? plug_toward(want, have) : unplug_toward(want, have);
    if (flags & (1UL << 9)) /* IF */
        sti();
    return r;
}

#define PCI_CAP_MSIX 0x11
#define MSIX_ENABLE 0x8000
#define MSIX_FUNCTION_MASK 0x4000
#define CC_MSIX_CONFIG 0x10
#define VIRTIO_NO_VECTOR 0xffff

static void vmem_irq(u8 vector)
{
    (void)vector;
    u64 have;
    u64 before = cfg64(CFG_PLUGGED_SIZE);
    if (sync_to_requested(&have) == 0 && cfg64(CFG_PLUGGED_SIZE) != before)
        kprintf("vmem: plugged %lu requested %lu\n", cfg64(CFG_PLUGGED_SIZE), cfg64(CFG_REQUESTED_SIZE));
}

/* Routes the configuration-change interrupt to VEC_VMEM on this CPU: MSI-X table entry 0, then msix_config = 0. */
static int msix_config_vector(void)
{
    u8 cap = pci_find_cap(&mem_dev.pci, PCI_CAP_MSIX, 0);
    if (!cap)
        return -1;
    u32 table = pci_read32(&mem_dev.pci, cap + 4);
    u64 bar = pci_bar_address(&mem_dev.pci, (int)(table & 7));
    if (!bar)
        return -1;
    u64 entry = bar + (table & ~7u);
    mmio_write32(entry + 0, 0xfee00000u | (lapic_id() << 12)); /* fixed delivery, physical destination */
    mmio_write32(entry + 4, 0);
    mmio_write32(entry + 8, VEC_VMEM);                            /* edge triggered */
    mmio_write32(entry + 12, 0);                                  /* unmasked */
    u16 control = pci_read16(&mem_dev.pci, cap + 2);
    pci_write16(&mem_dev.pci, cap + 2, (u16)((control | MSIX_ENABLE) & ~MSIX_FUNCTION_MASK));
    *(volatile u16 *)(uptr)(mem_dev.common + CC_MSIX_CONFIG) = 0;
    return *(volatile u16 *)(uptr)(mem_dev.common + CC_MSIX_CONFIG) == VIRTIO_NO_VECTOR ? -1 : 0;
}

void vmem_start(void)
{
    if (pci_find(VIRTIO_VENDOR, VIRTIO_PCI_DEVICE(VIRTIO_ID_MEM), &mem_dev.pci))
        return; /* no virtio-mem device: nothing to say */
    if (mem_init())
        return;
    irq_register(VEC_VMEM, vmem_irq);
    if (msix_config_vector()) {
        kprintf("vmem: no MSI-X vector for configuration changes; `vmem` plugs by hand\n");
        return;
    }
    u64 have;
    sync_to_requested(&have); /* a size requested before boot */
}

void cmd_vmem(const char *arg)
{
    int sync = !*arg;
    if (!sync && strcmp(arg, "verify")) {
        kprintf("usage: vmem | vmem verify\n");
        return;
    }
    if (mem_init())
        return;
    u64 have = 0;
    for (u64 b = 0; b < blocks; b++)
        have += (u64)is_plugged(b);
    if (sync && sync_to_requested(&have))
        return;
    u64 bad = 0, checked = 0;
    for (u64 b = 0; b < blocks && !bad; b++)
        if (is_plugged(b) && block_mapped(b)) {
            bad = check_block(b);
            checked++;
        }
    kprintf("vmem: plugged %lu requested %lu region 0x%lx+0x%lx block %lu ", cfg64(CFG_PLUGGED_SIZE), cfg64(CFG_REQUESTED_SIZE),
            region_addr, region_size, block_size);
    if (bad)
        kprintf("verify FAILED at 0x%lx\n", bad);
    else if (checked < have)
        kprintf("verify skipped (%lu blocks above 4 GiB)\n", have - checked);
    else
        kprintf("verify ok (%lu blocks)\n", checked);
}
