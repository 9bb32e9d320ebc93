/* Intel MultiProcessor Specification 1.4 table discovery. */
#ifndef KVMPS_MPTABLE_H
#define KVMPS_MPTABLE_H

#include "types.h"

#define MP_MAX_CPUS 256

struct mp_info {
    int found;           /* floating pointer found */
    u32 cpus;            /* processor entries with the EN flag */
    u32 napic_ids;
    u8 apic_ids[MP_MAX_CPUS];
};

extern struct mp_info mp;

void mptable_init(void);

#endif
