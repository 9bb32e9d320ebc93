/*
 * Interrupt entry stubs. Vectors 0-31 (exceptions) go to exc_common -> exc_handler(frame),
 * which does not return. Vectors 32-255 go to irq_common -> irq_dispatch(vector).
 * isr_table holds the 256 stub addresses for idt.c.
 */
#include "layout.h"

    .text
    .code64

.macro EXC_STUB n
    .balign 16
exc_stub_\n:
    .if (\n == 8) || (\n == 10) || (\n == 11) || (\n == 12) || (\n == 13) || (\n == 14) || (\n == 17) || (\n == 21) || (\n == 29) || (\n == 30)
    .else
    pushq $0                 /* dummy error code */
    .endif
    pushq $\n
    jmp exc_common
.endm

.macro IRQ_STUB n
    .balign 16
irq_stub_\n:
    pushq $\n
    jmp irq_common
.endm

    .altmacro
    .set i, 0
    .rept 32
    EXC_STUB %i
    .set i, i + 1
    .endr
    .rept 224
    IRQ_STUB %i
    .set i, i + 1
    .endr

exc_common:
    /* stack: vector, error code, rip, cs, rflags, rsp, ss */
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    cld
    movq %rsp, %rdi
    andq $-16, %rsp
    call exc_handler
1:  cli
    hlt
    jmp 1b

irq_common:
    /* caller-saved registers only: irq_dispatch is a normal C function */
    pushq %rax
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    subq $8, %rsp            /* CPU frame is 16-aligned; 10 pushes so far: realign */
    movq 80(%rsp), %rdi      /* vector */
    cld
    call irq_dispatch
    addq $8, %rsp
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rax
    addq $8, %rsp            /* vector */
    iretq

.macro STUB_ADDR kind, n
    .quad \kind\()_stub_\n
.endm

    .section .rodata
    .balign 8
    .globl isr_table
isr_table:
    .set i, 0
    .rept 32
    STUB_ADDR exc, %i
    .set i, i + 1
    .endr
    .rept 224
    STUB_ADDR irq, %i
    .set i, i + 1
    .endr
