/* IDT setup and interrupt dispatch. */
#ifndef KVMPS_IDT_H
#define KVMPS_IDT_H

#include "types.h"

typedef void (*irq_handler_t)(u8 vector);

void idt_init(void);     /* load the IDT (also used by APs via idt_load) */
void idt_load(void);
void irq_register(u8 vector, irq_handler_t h);
NORETURN void triple_fault(void);

#endif
