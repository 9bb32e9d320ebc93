/* Interactive console: interrupt-driven (or polled) line input with echo. */
#ifndef KVMPS_CONSOLE_H
#define KVMPS_CONSOLE_H

void console_init(int poll);   /* poll=0: route COM1 IRQ via the IOAPIC and enable RX irq */
void console_run(void);        /* never returns */

#endif
