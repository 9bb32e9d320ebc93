/* Console input: the COM1 RX interrupt fills a ring buffer; the main loop sleeps in sti;hlt. */
#include "console.h"
#include "acpi.h"
#include "apic.h"
#include "commands.h"
#include "idt.h"
#include "io.h"
#include "layout.h"
#include "lib.h"
#include "uart.h"

#define RX_SIZE 256 /* power of two */
#define LINE_MAX 200

static volatile u8 rx_buf[RX_SIZE];
static volatile u32 rx_head, rx_tail; /* head: written by irq, tail: by main loop */
static int polling;

static void rx_drain(void)
{
    for (int i = 0; i < 64 && uart_rx_ready(); i++) {
        u8 c = uart_getc_nowait();
        if (rx_head - rx_tail < RX_SIZE) {
            rx_buf[rx_head % RX_SIZE] = c;
            barrier();
            rx_head++;
        }
    }
}

static void uart_irq(u8 vector)
{
    (void)vector;
    rx_drain();
}

void console_init(int poll)
{
    polling = poll;
    if (polling)
        return;
    u32 gsi;
    u16 flags;
    acpi_isa_irq(COM1_IRQ, &gsi, &flags);
    u64 ioapic = acpi.have_ioapic ? acpi.ioapic_addr : 0xfec00000;
    u32 gsi_base = acpi.have_ioapic ? acpi.ioapic_gsi_base : 0;
    irq_register(VEC_UART, uart_irq);
    if (ioapic_route(ioapic, gsi_base, gsi, VEC_UART, flags, lapic_id()) != 0) {
        kprintf("console: no IOAPIC, polling\n");
        polling = 1;
        return;
    }
    uart_enable_rx_irq();
}

/* Returns the next input byte, sleeping (or polling) until one arrives. */
static u8 getc_blocking(void)
{
    for (;;) {
        if (polling) {
            if (uart_rx_ready())
                return uart_getc_nowait();
            cpu_pause();
            continue;
        }
        cli();
        rx_drain(); /* catch bytes that arrived before the irq was routed */
        if (rx_tail != rx_head) {
            u8 c = rx_buf[rx_tail % RX_SIZE];
            rx_tail++;
            sti();
            return c;
        }
        sti_hlt();
    }
}

int console_try_getc(u8 *c)
{
    if (polling) {
        if (!uart_rx_ready())
            return 0;
        *c = uart_getc_nowait();
        return 1;
    }
    /* The irq handler shares the ring: hold interrupts off, and leave IF as the caller had it (a boot command runs
       with interrupts off, a typed one with them on). */
    u64 flags;
    __asm__ volatile("pushfq; popq %0; cli" : "=r"(flags) : : "memory");
    int got = 0;
    rx_drain();
    if (rx_tail != rx_head) {
        *c = rx_buf[rx_tail % RX_SIZE];
        rx_tail++;
        got = 1;
    }
    if (flags & (1UL << 9)) /* IF */
        sti();
    return got;
}

void console_run(void)
{
    static char line[LINE_MAX + 1];
    u32 len = 0;
    u8 prev = 0;
    kprintf("> ");
    for (;;) {
        u8 c = getc_blocking();
        if (c == '\r' || c == '\n') {
            if (c == '\n' && prev == '\r') { /* CR LF counts once */
                prev = c;
                continue;
            }
            prev = c;
            uart_puts("\n");
            line[len] = 0;
            run_command(line);
            len = 0;
            kprintf("> ");
            continue;
        }
        prev = c;
        if (c == 0x08 || c == 0x7f) {
            if (len) {
                len--;
                uart_puts("\b \b");
            }
        } else if (c >= 0x20 && c < 0x7f) {
            if (len < LINE_MAX) {
                line[len++] = (char)c;
                uart_putc_raw((char)c);
            }
        }
        /* other control characters are ignored */
    }
}
