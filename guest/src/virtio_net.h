/* virtio-net commands: a polled driver and just enough of a stack (ARP, ICMP echo) to prove frames both ways. */
#ifndef KVMPS_VIRTIO_NET_H
#define KVMPS_VIRTIO_NET_H

#include "types.h"

/* `net info` | `net ip A.B.C.D` | `net serve N [SECONDS]` | `net send` */
void cmd_net(char *arg);
/* Before the device in PCI slot `slot` (bus 0) is ejected: resets it if the driver uses it. Returns 1 if it did. */
int net_release_slot(u8 slot);
/* After a hot-add: brings the driver up if it has no device yet. 2: brought up now, 1: it already had one, 0: failed. */
int net_attach(void);

#endif
