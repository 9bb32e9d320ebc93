/* Application processor startup (INIT / SIPI / SIPI through the xAPIC ICR), and parking for hot-remove. */
#ifndef KVMPS_SMP_H
#define KVMPS_SMP_H

#include "types.h"

/* Start every AP listed in the MADT (enabled entries; MP table if there is no MADT).
 * Returns the number of CPUs online (BSP + APs that checked in). */
u32 smp_boot(void);
/* CPUs online now (the BSP and every AP that checked in and is not parked). */
u32 smp_online(void);
int smp_cpu_online(u32 apic_id);
/* Hot-add: INIT/SIPI/SIPI to one CPU; 0 once it checked in, -1 if it did not within 200 ms. */
int smp_start_cpu(u32 apic_id);
/* Hot-remove: asks an online AP to park (it halts with interrupts off); 0 once it has, -1 if it did not within 100 ms. */
int smp_park_cpu(u32 apic_id);

#endif
