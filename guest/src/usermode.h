/* Running code at CPL3 (ring 3) on the BSP: the TSS, the ring-3 segments, user-accessible pages, entry and return.
   Some hosts emulate guest kernel code instruction by instruction but run ring-3 code natively (nested PVM); a
   workload that must go at hardware speed (udirty.c) runs there. */
#ifndef KVMPS_USERMODE_H
#define KVMPS_USERMODE_H

#include "types.h"

/* Loads the TSS and the return gate (once). Returns 0 on success. */
int user_init(void);
/* Sets U/S on every paging level of the 2 MiB pages covering [start, end). Returns 0, or -1 (with a message) when
   the range is not mapped by 2 MiB or 4 KiB pages. */
int user_map(u64 start, u64 end);
/* Runs ring-3 code at rip with rsp and rdi = arg, interrupts as the caller has them, until it executes `ud2`;
   returns its rdi then. */
u64 user_enter(u64 rip, u64 rsp, u64 arg);

#endif
