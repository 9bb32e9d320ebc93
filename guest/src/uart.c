/* 16550A UART driver for COM1: 115200 8N1, FIFO on, polled transmit. */
#include "uart.h"
#include "io.h"

#define REG_RBR 0 /* receive buffer (DLAB=0, read) */
#define REG_THR 0 /* transmit holding (DLAB=0, write) */
#define REG_DLL 0 /* divisor latch low (DLAB=1) */
#define REG_IER 1 /* interrupt enable (DLAB=0) */
#define REG_DLM 1 /* divisor latch high (DLAB=1) */
#define REG_FCR 2 /* FIFO control (write) */
#define REG_LCR 3
#define REG_MCR 4
#define REG_LSR 5

#define LSR_DR 0x01
#define LSR_THRE 0x20

/* Bytes we may still write without checking LSR: THRE means the 16-byte TX FIFO is empty,
 * so one LSR read covers 16 bytes (fewer port exits per character). */
static unsigned tx_room;

void uart_init(void)
{
    const u16 p = COM1_PORT;
    outb(p + REG_IER, 0x00);  /* no interrupts while configuring */
    outb(p + REG_LCR, 0x80);  /* DLAB=1 */
    outb(p + REG_DLL, 0x01);  /* divisor 1 = 115200 baud */
    outb(p + REG_DLM, 0x00);
    outb(p + REG_LCR, 0x03);  /* DLAB=0, 8 data bits, no parity, 1 stop bit */
    outb(p + REG_FCR, 0x07);  /* FIFO on, clear RX+TX FIFOs, RX trigger = 1 byte */
    outb(p + REG_MCR, 0x0b);  /* DTR | RTS | OUT2 (OUT2 gates the IRQ line) */
    (void)inb(p + REG_LSR);   /* clear stale line status */
    tx_room = 0;
}

void uart_putc_raw(char c)
{
    if (!tx_room) {
        /* Bounded wait for THRE: a missing UART (reads 0xff) or a stuck one cannot hang us. */
        for (unsigned i = 0; i < 100000; i++) {
            if (inb(COM1_PORT + REG_LSR) & LSR_THRE)
                break;
            cpu_pause();
        }
        tx_room = 16;
    }
    tx_room--;
    outb(COM1_PORT + REG_THR, (u8)c);
}

void uart_putc(char c)
{
    if (c == '\n')
        uart_putc_raw('\r');
    uart_putc_raw(c);
}

void uart_puts(const char *s)
{
    while (*s)
        uart_putc(*s++);
}

int uart_rx_ready(void)
{
    u8 lsr = inb(COM1_PORT + REG_LSR);
    return lsr != 0xff && (lsr & LSR_DR);
}

u8 uart_getc_nowait(void)
{
    return inb(COM1_PORT + REG_RBR);
}

void uart_enable_rx_irq(void)
{
    outb(COM1_PORT + REG_MCR, 0x0b);
    outb(COM1_PORT + REG_IER, 0x01); /* received-data-available interrupt */
}
