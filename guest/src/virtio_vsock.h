/* virtio-vsock driver (polled, one connection at a time): `vsock cid`, `vsock listen PORT`, `vsock connect PORT TEXT`.
   Each takes the device's events first: a transport reset (after a restore) re-reads the CID. */
#ifndef KVMPS_VIRTIO_VSOCK_H
#define KVMPS_VIRTIO_VSOCK_H

#include "types.h"

/* Prints "vsock: cid N" (after "vsock: transport reset (cid N)" when the device reset the transport). */
void cmd_vsock_cid(void);
/* Accepts one connection on PORT, echoes the first data it receives, prints "vsock: echoed N", shuts down. */
void cmd_vsock_listen(u64 port);
/* Connects to host port PORT, sends TEXT, prints "vsock: reply <text>", shuts down. */
void cmd_vsock_connect(u64 port, const char *text);

#endif
