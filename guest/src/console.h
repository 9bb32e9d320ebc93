/* Interactive console: interrupt-driven (or polled) line input with echo. */
#ifndef KVMPS_CONSOLE_H
#define KVMPS_CONSOLE_H

#include "types.h"

void console_init(int poll);   /* poll=0: route COM1 IRQ via the IOAPIC and enable RX irq */
void console_run(void);        /* never returns */
/* The next input byte if one has arrived (from the RX ring, or the UART when polling): 1, else 0. For commands that
   poll the console while they run (work): with the RX irq on, the irq handler takes the bytes off the UART first. */
int console_try_getc(u8 *c);

#endif
