/* 16550A UART (COM1) console. */
#ifndef KVMPS_UART_H
#define KVMPS_UART_H

#include "types.h"

#define COM1_PORT 0x3f8
#define COM1_IRQ 4

void uart_init(void);
void uart_putc(char c);        /* '\n' is sent as "\r\n" */
void uart_putc_raw(char c);
void uart_puts(const char *s);
int uart_rx_ready(void);
u8 uart_getc_nowait(void);     /* only valid if uart_rx_ready() */
void uart_enable_rx_irq(void); /* IER bit0 (+ MCR OUT2, already set by uart_init) */

#endif
