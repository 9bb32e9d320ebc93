/* virtio 1.x over PCI (modern interface only): capability discovery, feature negotiation, split queue setup.
   The device is polled: the driver gives the queue no MSI-X vector and reads the used ring. */
#include "virtio.h"
#include "io.h"
#include "lib.h"
#include "timer.h"

/* virtio_pci_common_cfg offsets */
#define CC_DFSELECT 0x00
#define CC_DF 0x04
#define CC_GFSELECT 0x08
#define CC_GF 0x0c
#define CC_MSIX_CONFIG 0x10
#define CC_NUM_QUEUES 0x12
#define CC_STATUS 0x14
#define CC_Q_SELECT 0x16
#define CC_Q_SIZE 0x18
#define CC_Q_MSIX 0x1a
#define CC_Q_ENABLE 0x1c
#define CC_Q_NOFF 0x1e
#define CC_Q_DESC 0x20
#define CC_Q_DRIVER 0x28
#define CC_Q_DEVICE 0x30

#define CAP_VENDOR 0x09
#define CFG_COMMON 1
#define CFG_NOTIFY 2
#define CFG_ISR 3
#define CFG_DEVICE 4

#define VIRTIO_F_VERSION_1_HI 1u /* bit 32 */

static inline u16 rd16(u64 a) { return *(volatile u16 *)(uptr)a; }
static inline void wr16(u64 a, u16 v) { *(volatile u16 *)(uptr)a = v; }
static inline void wr64(u64 a, u64 v) { mmio_write32(a, (u32)v); mmio_write32(a + 4, (u32)(v >> 32)); }

static int virtio_caps(struct virtio_dev *vd);

int virtio_find(struct virtio_dev *vd, u16 type)
{
    memset(vd, 0, sizeof(*vd));
    if (pci_find(VIRTIO_VENDOR, VIRTIO_PCI_DEVICE(type), &vd->pci))
        return -1;
    return virtio_caps(vd);
}

int virtio_find_slot(struct virtio_dev *vd, u16 type, u8 slot)
{
    memset(vd, 0, sizeof(*vd));
    vd->pci.dev = slot;
    u32 id = pci_read32(&vd->pci, PCI_VENDOR);
    if ((id & 0xffff) != VIRTIO_VENDOR || (id >> 16) != (u32)VIRTIO_PCI_DEVICE(type))
        return -1;
    vd->pci.vendor = VIRTIO_VENDOR;
    vd->pci.device = VIRTIO_PCI_DEVICE(type);
    return virtio_caps(vd);
}

/* The virtio capabilities of the function vd->pci: common, notify, ISR and device config addresses. */
static int virtio_caps(struct virtio_dev *vd)
{
    u64 bars[6] = { 0 };
    for (u8 cap = pci_find_cap(&vd->pci, CAP_VENDOR, 0); cap; cap = pci_find_cap(&vd->pci, CAP_VENDOR, cap)) {
        u8 cfg_type = pci_read8(&vd->pci, cap + 3);
        u8 bar = pci_read8(&vd->pci, cap + 4);
        u32 off = pci_read32(&vd->pci, cap + 8);
        if (bar > 5 || cfg_type < CFG_COMMON || cfg_type > CFG_DEVICE)
            continue;
        if (!bars[bar])
            bars[bar] = pci_bar_address(&vd->pci, bar);
        u64 at = bars[bar] + off;
        switch (cfg_type) {
        case CFG_COMMON: if (!vd->common) vd->common = at; break;
        case CFG_NOTIFY:
            if (!vd->notify) { vd->notify = at; vd->notify_mult = pci_read32(&vd->pci, cap + 16); }
            break;
        case CFG_ISR: if (!vd->isr) vd->isr = at; break;
        case CFG_DEVICE: if (!vd->device_cfg) vd->device_cfg = at; break;
        }
    }
    if (!vd->common || !vd->notify)
        return -1;
    pci_write16(&vd->pci, PCI_COMMAND, pci_read16(&vd->pci, PCI_COMMAND) | PCI_CMD_MEMORY | PCI_CMD_MASTER);
    return 0;
}

u8 virtio_status(struct virtio_dev *vd) { return mmio_read8(vd->common + CC_STATUS); }

int virtio_negotiate(struct virtio_dev *vd, u64 wanted)
{
    mmio_write8(vd->common + CC_STATUS, 0);
    for (int i = 0; i < 1000 && virtio_status(vd); i++) /* reset completes when status reads 0 */
        cpu_pause();
    mmio_write8(vd->common + CC_STATUS, VIRTIO_STATUS_ACK);
    mmio_write8(vd->common + CC_STATUS, VIRTIO_STATUS_ACK | VIRTIO_STATUS_DRIVER);
    mmio_write32(vd->common + CC_DFSELECT, 0);
    u64 offered = mmio_read32(vd->common + CC_DF);
    mmio_write32(vd->common + CC_DFSELECT, 1);
    offered |= (u64)mmio_read32(vd->common + CC_DF) << 32;
    if (!(offered >> 32 & VIRTIO_F_VERSION_1_HI))
        return -1;
    u64 accept = (offered & wanted) | (1ULL << 32);
    mmio_write32(vd->common + CC_GFSELECT, 0);
    mmio_write32(vd->common + CC_GF, (u32)accept);
    mmio_write32(vd->common + CC_GFSELECT, 1);
    mmio_write32(vd->common + CC_GF, (u32)(accept >> 32));
    mmio_write8(vd->common + CC_STATUS, VIRTIO_STATUS_ACK | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
    if (!(virtio_status(vd) & VIRTIO_STATUS_FEATURES_OK)) {
        mmio_write8(vd->common + CC_STATUS, VIRTIO_STATUS_FAILED);
        return -1;
    }
    return 0;
}

int virtio_queue_setup(struct virtio_dev *vd, struct virtq *vq, u16 index)
{
    wr16(vd->common + CC_Q_SELECT, index);
    u16 max = rd16(vd->common + CC_Q_SIZE);
    if (!max)
        return -1;
    memset(vq, 0, sizeof(*vq));
    vq->size = max < VQ_SIZE ? max : VQ_SIZE;
    vq->index = index;
    vq->notify_addr = vd->notify + (u64)rd16(vd->common + CC_Q_NOFF) * vd->notify_mult;
    wr16(vd->common + CC_Q_SIZE, vq->size);
    wr16(vd->common + CC_Q_MSIX, 0xffff); /* no vector: polled */
    wr64(vd->common + CC_Q_DESC, (u64)(uptr)vq->desc);
    wr64(vd->common + CC_Q_DRIVER, (u64)(uptr)&vq->avail);
    wr64(vd->common + CC_Q_DEVICE, (u64)(uptr)&vq->used);
    wr16(vd->common + CC_Q_ENABLE, 1);
    return rd16(vd->common + CC_Q_ENABLE) == 1 ? 0 : -1;
}

void virtio_reset(struct virtio_dev *vd)
{
    mmio_write8(vd->common + CC_STATUS, 0);
    for (int i = 0; i < 1000 && virtio_status(vd); i++)
        cpu_pause();
}

void virtio_driver_ok(struct virtio_dev *vd)
{
    mmio_write8(vd->common + CC_STATUS, VIRTIO_STATUS_ACK | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
}

void virtq_submit(struct virtq *vq, u16 head)
{
    vq->avail.ring[vq->avail.idx % vq->size] = head;
    barrier(); /* x86: stores are not reordered with stores; stop the compiler doing it */
    *(volatile u16 *)&vq->avail.idx = vq->avail.idx + 1;
    barrier();
    wr16(vq->notify_addr, vq->index);
}

long virtq_wait_used(struct virtq *vq, u64 timeout_us)
{
    u64 start = timer_ticks(), limit = timer_us_to_ticks(timeout_us);
    while (*(volatile u16 *)&vq->used.idx == vq->last_used) {
        if (timer_ticks() - start > limit)
            return -1;
        cpu_pause();
    }
    barrier();
    struct virtq_used_elem *e = &vq->used.ring[vq->last_used % vq->size];
    vq->last_used++;
    return (long)e->len;
}
