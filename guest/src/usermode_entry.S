/*
 * user_enter(rip, rsp, arg): saves the caller's flags and callee-saved registers, points TSS.RSP0 below them and
 * iretq's to ring 3 with rdi = arg and the caller's IF. Ring 3 comes back with `ud2`: user_ud_stub (the #UD gate)
 * sends a #UD from ring 3 to user_return, which drops the ring-3 frame, restores the kernel segments, registers and
 * flags, and returns the ring-3 rdi from user_enter; a #UD in the kernel goes to the ordinary exception stub.
 * Why not `int $0x80`: this project's nested PVM host lets a ring-3 `int n` fall through to the next instruction
 * (nothing is delivered), while exceptions from ring 3 are delivered on every host.
 */
#include "layout.h"

    .text
    .code64
    .globl user_enter
user_enter:
    pushfq
    pushq %rbx
    pushq %rbp
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, user_kernel_rsp(%rip)
    movq %rsp, user_tss+4(%rip)   /* RSP0: interrupts from ring 3 push below the saved registers */
    movq 48(%rsp), %rax           /* the caller's RFLAGS */
    andq $0x200, %rax             /* keep IF only (IOPL 0: ring 3 has no port access, no cli/sti) */
    orq $0x2, %rax
    pushq $(GDT_UDATA | 3)        /* SS */
    pushq %rsi                    /* RSP */
    pushq %rax                    /* RFLAGS */
    pushq $(GDT_UCODE64 | 3)      /* CS */
    pushq %rdi                    /* RIP */
    movq %rdx, %rdi
    xorl %eax, %eax
    xorl %ebx, %ebx
    xorl %ecx, %ecx
    xorl %edx, %edx
    xorl %esi, %esi
    xorl %ebp, %ebp
    xorl %r8d, %r8d
    xorl %r9d, %r9d
    xorl %r10d, %r10d
    xorl %r11d, %r11d
    xorl %r12d, %r12d
    xorl %r13d, %r13d
    xorl %r14d, %r14d
    xorl %r15d, %r15d
    iretq

    .balign 16
    .globl user_ud_stub
user_ud_stub:
    testb $3, 8(%rsp)             /* the frame's CS (#UD pushes no error code): from ring 3? */
    jnz user_return
    jmpq *isr_table+6*8(%rip)     /* a kernel #UD: the ordinary exception path */

user_return:
    movq %rdi, %rax
    movq user_kernel_rsp(%rip), %rsp
    movl $GDT_DATA, %ecx          /* iretq to ring 3 nulled DS/ES; the interrupt nulled SS */
    movl %ecx, %ds
    movl %ecx, %es
    movl %ecx, %ss
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbp
    popq %rbx
    popfq
    ret

    .section .bss
    .balign 8
user_kernel_rsp:
    .skip 8
