/* Time source for short delays: ACPI PM timer if present, else TSC (frequency from CPUID or PIT). */
#ifndef KVMPS_TIMER_H
#define KVMPS_TIMER_H

#include "types.h"

void timer_init(u16 pm_tmr_port, int pm_tmr_32bit);
u64 timer_ticks(void);      /* monotonic; call at least every ~4 s */
u64 timer_hz(void);
u64 timer_us_to_ticks(u64 us);
void udelay(u64 us);
const char *timer_source(void);
u64 timer_tsc_hz(void);     /* TSC frequency (measured against the PM timer when that is the source) */

#endif
