/* Application processor startup (INIT / SIPI / SIPI through the xAPIC ICR). */
#ifndef KVMPS_SMP_H
#define KVMPS_SMP_H

#include "types.h"

/* Start every AP listed in the MADT (enabled entries; MP table if there is no MADT).
 * Returns the number of CPUs online (BSP + APs that checked in). */
u32 smp_boot(void);
u32 smp_online(void);

#endif
