/* 64-bit IDT with interrupt gates for all 256 vectors. */
#include "idt.h"
#include "apic.h"
#include "io.h"
#include "layout.h"
#include "lib.h"

struct idt_gate {
    u16 off_lo;
    u16 sel;
    u8 ist;
    u8 type_attr;
    u16 off_mid;
    u32 off_hi;
    u32 zero;
} PACKED;

struct idt_ptr {
    u16 limit;
    u64 base;
} PACKED;

struct exc_frame {
    u64 r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
    u64 vector, error, rip, cs, rflags, rsp, ss;
};

extern const u64 isr_table[256];

static struct idt_gate idt[256] __attribute__((aligned(16)));
static irq_handler_t handlers[256];

void idt_load(void)
{
    struct idt_ptr p = { sizeof(idt) - 1, (u64)(uptr)idt };
    __asm__ volatile("lidt %0" : : "m"(p));
}

void idt_init(void)
{
    for (int v = 0; v < 256; v++) {
        u64 a = isr_table[v];
        idt[v].off_lo = (u16)a;
        idt[v].sel = GDT_CODE64;
        idt[v].ist = 0;
        idt[v].type_attr = 0x8e; /* present, DPL0, 64-bit interrupt gate */
        idt[v].off_mid = (u16)(a >> 16);
        idt[v].off_hi = (u32)(a >> 32);
        idt[v].zero = 0;
    }
    idt_load();
}

void idt_set_gate(u8 vector, u64 addr, u8 dpl)
{
    idt[vector].off_lo = (u16)addr;
    idt[vector].sel = GDT_CODE64;
    idt[vector].ist = 0;
    idt[vector].type_attr = (u8)(0x8e | (dpl & 3) << 5); /* present, DPL, 64-bit interrupt gate (IF cleared) */
    idt[vector].off_mid = (u16)(addr >> 16);
    idt[vector].off_hi = (u32)(addr >> 32);
    idt[vector].zero = 0;
    idt_load(); /* a hypervisor may keep a copy of the table from lidt */
}

void irq_register(u8 vector, irq_handler_t h)
{
    handlers[vector] = h;
}

void irq_dispatch(u64 vector)
{
    u8 v = (u8)vector;
    if (handlers[v])
        handlers[v](v);
    /* EOI only for LAPIC-delivered interrupts (not the spurious vector, not PIC ExtINT). */
    if (v != LAPIC_SPURIOUS_VECTOR && lapic_in_service(v))
        lapic_eoi();
}

void exc_handler(struct exc_frame *f)
{
    u64 cr2;
    __asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
    kprintf("\nexception %lu err=%lx rip=%lx rsp=%lx cr2=%lx\n", f->vector, f->error, f->rip, f->rsp, cr2);
    halt_forever();
}

NORETURN void triple_fault(void)
{
    struct idt_ptr p = { 0, 0 };
    __asm__ volatile("lidt %0; ud2" : : "m"(p));
    halt_forever();
}
