/* virtio-rng commands. */
#ifndef KVMPS_VIRTIO_RNG_H
#define KVMPS_VIRTIO_RNG_H

#include "types.h"

#define RNG_MAX_BYTES 256

/* `rng N`: reads N random bytes, prints "rng: <hex>" and "rng: ok". */
void cmd_rng(u64 n);
/* `rngbad`: posts a buffer outside guest RAM; prints the device status (expect NEEDS_RESET). */
void cmd_rng_bad(void);

#endif
