/* virtio-mem driver (polled) and the `vmem` command. */
#ifndef KVMPS_VIRTIO_MEM_H
#define KVMPS_VIRTIO_MEM_H

/* `vmem`: plugs or unplugs blocks until plugged_size == requested_size, writes a pattern into the pages of newly
   plugged blocks and checks every plugged block; prints
   "vmem: plugged <bytes> requested <bytes> region 0x<addr>+0x<size> block <bytes> verify ok|FAILED at 0x<addr>|skipped".
   `vmem verify`: only the check. */
void cmd_vmem(const char *arg);

#endif
