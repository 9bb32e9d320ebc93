/* IDT setup and interrupt dispatch. */
#ifndef KVMPS_IDT_H
#define KVMPS_IDT_H

#include "types.h"

typedef void (*irq_handler_t)(u8 vector);

void idt_init(void);     /* load the IDT (also used by APs via idt_load) */
void idt_load(void);
void irq_register(u8 vector, irq_handler_t h);
/* Points a vector at addr with the given DPL (3: reachable by `int` from ring 3). */
void idt_set_gate(u8 vector, u64 addr, u8 dpl);
NORETURN void triple_fault(void);

#endif
