/* virtio-balloon driver (polled) and the `mem touch` command. */
#ifndef KVMPS_VIRTIO_BALLOON_H
#define KVMPS_VIRTIO_BALLOON_H

#include "types.h"

/* `mem touch N`: writes one byte into each page of the next N MiB the allocator would hand out (they stay free). */
void cmd_mem_touch(u64 mib);
/* `balloon`: one pass toward the device's num_pages; prints "balloon: actual <pages>". */
void cmd_balloon(void);
/* `balloon stats`: sends (or re-sends, once the device returned it) a statistics buffer. */
void cmd_balloon_stats(void);

#endif
