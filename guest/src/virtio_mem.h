/* virtio-mem driver (queue polled, configuration change on an MSI-X vector) and the `vmem` command. */
#ifndef KVMPS_VIRTIO_MEM_H
#define KVMPS_VIRTIO_MEM_H

/* `vmem`: plugs or unplugs blocks until plugged_size == requested_size, writes a pattern into the pages of newly
   plugged blocks and checks every plugged block; prints
   "vmem: plugged <bytes> requested <bytes> region 0x<addr>+0x<size> block <bytes> verify ok|FAILED at 0x<addr>|skipped".
   `vmem verify`: only the check. */
void cmd_vmem(const char *arg);
/* At boot: takes the device if there is one, routes its configuration-change interrupt, and from then on plugs or
   unplugs toward the requested size on its own, printing "vmem: plugged <bytes> requested <bytes>" after each change. */
void vmem_start(void);

#endif
