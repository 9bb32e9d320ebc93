/* virtio-vsock driver (polled, one connection at a time): `vsock listen PORT`, `vsock connect PORT TEXT`. */
#ifndef KVMPS_VIRTIO_VSOCK_H
#define KVMPS_VIRTIO_VSOCK_H

#include "types.h"

/* Accepts one connection on PORT, echoes the first data it receives, prints "vsock: echoed N", shuts down. */
void cmd_vsock_listen(u64 port);
/* Connects to host port PORT, sends TEXT, prints "vsock: reply <text>", shuts down. */
void cmd_vsock_connect(u64 port, const char *text);

#endif
