/*
 * Real-mode AP startup trampoline. The BSP copies [trampoline_start, trampoline_end) to
 * TRAMPOLINE_BASE (page aligned, below 1 MiB), patches tramp_cr3, and sends INIT/SIPI/SIPI
 * with vector TRAMPOLINE_BASE >> 12. The AP goes real -> protected -> long mode and jumps
 * to ap_entry64 in the kernel image.
 */
#include "layout.h"

#define T(sym) (TRAMPOLINE_BASE + ((sym) - trampoline_start))

    .section .rodata.trampoline, "a"
    .balign 16
    .globl trampoline_start, trampoline_end, trampoline_cr3_offset
    .code16
trampoline_start:
    cli
    cld
    ljmp $0, $T(1f)          /* CS:IP = 0:TRAMPOLINE_BASE+x (SIPI gives CS=base>>4, IP=0) */
1:  xorw %ax, %ax
    movw %ax, %ds
    movw %ax, %ss
    lgdtl T(tramp_gdt_ptr)
    movl %cr0, %eax
    orl $1, %eax             /* PE */
    movl %eax, %cr0
    ljmpl $GDT_CODE32, $T(tramp_pm32)

    .code32
tramp_pm32:
    movl $GDT_DATA, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    movl %cr4, %eax
    orl $0x20, %eax          /* PAE */
    movl %eax, %cr4
    movl T(tramp_cr3), %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx   /* EFER.LME */
    rdmsr
    orl $0x100, %eax
    wrmsr
    movl %cr0, %eax
    andl $0x9fffffff, %eax   /* clear CD/NW (reset value has caches disabled) */
    orl $0x80010001, %eax    /* PG | WP | PE */
    movl %eax, %cr0
    ljmp $GDT_CODE64, $T(tramp_lm64)

    .code64
tramp_lm64:
    movl $ap_entry64, %eax   /* absolute address inside the kernel image (< 4 GiB) */
    jmp *%rax

    .balign 8
tramp_gdt:                       /* same selectors as the kernel GDT (entry.S) */
    .quad 0                      /* 0x00 */
    .quad 0x00af9a000000ffff     /* 0x08 64-bit code */
    .quad 0x00cf92000000ffff     /* 0x10 data */
    .quad 0x00cf9a000000ffff     /* 0x18 32-bit code */
tramp_gdt_end:
tramp_gdt_ptr:
    .word tramp_gdt_end - tramp_gdt - 1
    .long T(tramp_gdt)
    .balign 4
tramp_cr3:
    .long 0
trampoline_end:

    .section .rodata
    .balign 4
trampoline_cr3_offset:
    .long tramp_cr3 - trampoline_start
