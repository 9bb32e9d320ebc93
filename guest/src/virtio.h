/* virtio 1.x modern PCI transport and one split virtqueue, polled (no interrupts). */
#ifndef KVMPS_VIRTIO_H
#define KVMPS_VIRTIO_H

#include "pci.h"
#include "types.h"

#define VIRTIO_VENDOR 0x1af4
#define VIRTIO_PCI_DEVICE(type) (0x1040 + (type))

#define VIRTIO_STATUS_ACK 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED 0x80

#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2

#define VQ_SIZE 16 /* entries the driver uses (the device may offer more) */

struct virtq_desc { u64 addr; u32 len; u16 flags; u16 next; };
struct virtq_avail { u16 flags; u16 idx; u16 ring[VQ_SIZE]; u16 used_event; };
struct virtq_used_elem { u32 id; u32 len; };
struct virtq_used { u16 flags; u16 idx; struct virtq_used_elem ring[VQ_SIZE]; u16 avail_event; };

/* One page: descriptor table (16-byte aligned), avail ring, used ring (4-byte aligned). */
struct virtq {
    struct virtq_desc desc[VQ_SIZE];
    struct virtq_avail avail;
    u8 pad0[2];
    struct virtq_used used;
    u16 size;           /* entries in use */
    u16 last_used;
    u64 notify_addr;
    u16 index;
} __attribute__((aligned(4096)));

struct virtio_dev {
    struct pci_dev pci;
    u64 common;        /* MMIO addresses of the capability regions */
    u64 notify;
    u64 isr;
    u64 device_cfg;
    u32 notify_mult;
};

/* Finds a modern virtio PCI device of this type and reads its capabilities. Returns 0 on success. */
int virtio_find(struct virtio_dev *vd, u16 type);
/* The virtio device of this type in PCI slot `slot` of bus 0 (function 0). Returns 0 on success. */
int virtio_find_slot(struct virtio_dev *vd, u16 type, u8 slot);
/* Reset, ACKNOWLEDGE, DRIVER, negotiate VERSION_1 (+ wanted), FEATURES_OK. Returns 0 on success. */
int virtio_negotiate(struct virtio_dev *vd, u64 wanted);
/* Sets up queue `index` in vq (size <= VQ_SIZE, no MSI-X vector) and enables it. */
int virtio_queue_setup(struct virtio_dev *vd, struct virtq *vq, u16 index);
void virtio_driver_ok(struct virtio_dev *vd);
/* Writes status 0: the device forgets its queues and stops using guest memory (before an eject). */
void virtio_reset(struct virtio_dev *vd);
u8 virtio_status(struct virtio_dev *vd);
/* Posts one descriptor chain (given head) to the device and notifies it. */
void virtq_submit(struct virtq *vq, u16 head);
/* Polls the used ring for up to timeout_us; returns the used length, or -1 on timeout. */
long virtq_wait_used(struct virtq *vq, u64 timeout_us);

#endif
