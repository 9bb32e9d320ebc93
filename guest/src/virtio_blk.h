/* virtio-blk commands (`blk ...`). */
#ifndef KVMPS_VIRTIO_BLK_H
#define KVMPS_VIRTIO_BLK_H

#include "types.h"

/* Sectors moved per request: larger transfers are split into requests of at most this many sectors. */
#define BLK_CHUNK_SECTORS 128

/* `blk info|write|read|flush|discard|zero ...`; `args` is everything after "blk" (modified in place). */
void cmd_blk(char *args);
/* Before the device in PCI slot `slot` (bus 0) is ejected: resets it if the driver uses it. Returns 1 if it did. */
int blk_release_slot(u8 slot);
/* After a hot-add: brings the driver up if it has no device yet. 2: brought up now, 1: it already had one, 0: failed. */
int blk_attach(void);

#endif
