/*
 * Boot entry points.
 *   _start     64-bit Linux-style entry (long mode, RSI = boot_params). ELF e_entry.
 *   pvh_start  PVH entry (32-bit protected mode, paging off, EBX = hvm_start_info),
 *              advertised by the XEN_ELFNOTE_PHYS32_ENTRY note.
 * Both zero .bss, load our GDT, switch to our stack and call kmain(protocol, info).
 * The PVH entry also builds identity page tables for 0-4 GiB (2 MiB pages).
 */
#include "layout.h"

    .section .note.Xen, "a"
    .balign 4
    .long 4                 /* namesz: "Xen\0" */
    .long 4                 /* descsz */
    .long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .long pvh_start

/* Fill pml4/pdpt/pd with an identity map of 0-4 GiB. Uses only 32-bit registers so it
 * assembles identically for .code32 and .code64. Clobbers eax, ecx, edx, edi. */
.macro BUILD_PAGE_TABLES
    movl $pdpt, %eax
    orl $0x3, %eax
    movl %eax, pml4
    xorl %ecx, %ecx
1:  movl %ecx, %eax
    shll $12, %eax
    addl $pd, %eax
    orl $0x3, %eax
    movl %eax, pdpt(,%ecx,8)
    incl %ecx
    cmpl $4, %ecx
    jb 1b
    xorl %ecx, %ecx
2:  movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax          /* present | writable | 2 MiB page */
    movl %ecx, %edx
    shrl $11, %edx           /* high dword: bits 32+ of the address */
    movl %eax, pd(,%ecx,8)
    movl %edx, pd+4(,%ecx,8)
    incl %ecx
    cmpl $2048, %ecx
    jb 2b
.endm

/* Zero .bss (rep stosl; the linker script keeps it 16-byte aligned). Clobbers eax, ecx, edi.
 * Stacks live in .noinit and are not cleared. */
.macro ZERO_BSS
    movl $__bss_start, %edi
    movl $__bss_end, %ecx
    subl %edi, %ecx
    shrl $2, %ecx
    xorl %eax, %eax
    cld
    rep stosl
.endm

    .section .text.entry, "ax"
    .code64
    .globl _start
_start:
    cli
    /* First sign of life: a carriage return on COM1 (invisible on a terminal). It marks "first guest
     * instruction" for the start-up benchmark, before the UART or anything else is set up. */
    movw $0x3f8, %dx
    movb $0x0d, %al
    outb %al, %dx
    movq %rsi, %rbx          /* boot_params: rbx survives ZERO_BSS */
    ZERO_BSS
    /* Keep the loader's identity map (docs/guest-layout.md: 0-4 GiB at CR3 = 0x9000);
     * building our own costs ~20k instructions, which matters on an emulated CPU. */
    movl $BOOT_LINUX64, %edi
    movq %rbx, %rsi
    jmp common64

    .code32
    .globl pvh_start
pvh_start:
    cli
    movw $0x3f8, %dx         /* first sign of life, as at _start */
    movb $0x0d, %al
    outb %al, %dx
    cld
    movl %ebx, %esi          /* hvm_start_info (ZERO_BSS / BUILD_PAGE_TABLES keep esi) */
    ZERO_BSS
    BUILD_PAGE_TABLES
    lgdt gdt_ptr
    movl $GDT_DATA, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    movl %cr4, %eax
    orl $0x20, %eax          /* PAE */
    movl %eax, %cr4
    movl $pml4, %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx   /* EFER */
    rdmsr
    orl $0x100, %eax         /* LME */
    wrmsr
    movl %cr0, %eax
    andl $0x9fffffff, %eax   /* caches on (clear CD, NW) */
    orl $0x80010001, %eax    /* PG | WP | PE */
    movl %eax, %cr0
    ljmp $GDT_CODE64, $pvh_long
    .code64
pvh_long:
    movl $BOOT_PVH, %edi
    movl %esi, %esi          /* zero-extend start_info pointer */
    /* fall through */

/* edi = protocol, rsi = info pointer; paging with our tables is active. */
common64:
    lgdt gdt_ptr
    movl $GDT_DATA, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    xorl %eax, %eax
    movl %eax, %fs
    movl %eax, %gs
    leaq boot_stack_top(%rip), %rsp
    pushq $GDT_CODE64
    leaq 1f(%rip), %rax
    pushq %rax
    lretq                    /* reload CS with our GDT's 64-bit code selector */
1:  xorl %ebp, %ebp
    call kmain
2:  cli
    hlt
    jmp 2b

/*
 * Application processors arrive here from the real-mode trampoline, in long mode on the BSP's
 * page tables, with CS = GDT_CODE64. Each picks the stack of its initial APIC ID (CPUID leaf 1, EBX bits 31-24),
 * so a CPU started again after a hot-remove gets the same one, and runs ap_main(apic_id).
 */
    .globl ap_entry64
ap_entry64:
    /* No stack yet. The trampoline GDT uses the same selectors as ours, so CS stays valid. */
    lgdt gdt_ptr
    movl $GDT_DATA, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    movl $1, %eax
    cpuid
    shrl $24, %ebx
    cmpl $MAX_AP_STACKS, %ebx
    jae 3f
    movl %ebx, %edi
    leal 1(%ebx), %eax
    shll $AP_STACK_SHIFT, %eax
    leaq ap_stacks(%rip), %rsp
    addq %rax, %rsp
    xorl %ebp, %ebp
    call ap_main
3:  cli
    hlt
    jmp 3b

    /* .data, not .rodata: ltr writes the TSS descriptor's busy bit. */
    .section .data
    .balign 16
    .globl gdt
gdt:
    .quad 0                      /* 0x00 null */
    .quad 0x00af9a000000ffff     /* 0x08 64-bit code */
    .quad 0x00cf92000000ffff     /* 0x10 data */
    .quad 0x00cf9a000000ffff     /* 0x18 32-bit code */
    .quad 0x00cff2000000ffff     /* 0x20 ring-3 data */
    .quad 0x00affa000000ffff     /* 0x28 ring-3 64-bit code */
    .globl gdt_tss
gdt_tss:
    .quad 0, 0                   /* 0x30 TSS, filled by usermode.c */
gdt_end:
    .balign 8
    .globl gdt_ptr
gdt_ptr:
    .word gdt_end - gdt - 1
    .quad gdt                    /* 32-bit lgdt reads only the low dword */

    .section .bss
    .balign 4096
    .globl pml4
pml4:   .skip 4096               /* used by the PVH entry only */
pdpt:   .skip 4096
pd:     .skip 4 * 4096

    .section .noinit, "aw", @nobits
    .balign 16
boot_stack:
    .skip BOOT_STACK_SIZE
boot_stack_top:
    .balign 16
    .globl ap_stacks
ap_stacks:
    .skip MAX_AP_STACKS << AP_STACK_SHIFT
