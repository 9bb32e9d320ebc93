/* virtio-blk commands (`blk ...`). */
#ifndef KVMPS_VIRTIO_BLK_H
#define KVMPS_VIRTIO_BLK_H

/* Sectors moved per request: larger transfers are split into requests of at most this many sectors. */
#define BLK_CHUNK_SECTORS 128

/* `blk info|write|read|flush|discard|zero ...`; `args` is everything after "blk" (modified in place). */
void cmd_blk(char *args);

#endif
