/* virtio-net commands: a polled driver and just enough of a stack (ARP, ICMP echo) to prove frames both ways. */
#ifndef KVMPS_VIRTIO_NET_H
#define KVMPS_VIRTIO_NET_H

/* `net info` | `net ip A.B.C.D` | `net serve N [SECONDS]` | `net send` */
void cmd_net(char *arg);

#endif
