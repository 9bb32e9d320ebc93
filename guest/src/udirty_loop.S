/*
 * The ring-3 loop of "work udirty" (udirty.c), copied to a user page and run there: position-independent, registers
 * and its state block only. rdi = struct udirty_state (offsets below). Each step writes the generation into the first
 * qword of the page at the cursor (one store per 4 KiB page); paced by rdtsc when tsc_per_page is not 0. Returns to
 * the kernel with `ud2` (usermode_entry.S) once the TSC passes slice_end (or went back, as after a migration to a host whose TSC
 * the VMM did not carry over).
 */
#define ST_BASE 0
#define ST_PAGES 8
#define ST_TSC_PER_PAGE 16
#define ST_SLICE_START 24
#define ST_SLICE_END 32
#define ST_NEXT_DUE 40
#define ST_MAX_LAG 48
#define ST_CURSOR 56
#define ST_GEN 64
#define ST_WRITTEN 72

    .text
    .code64
    .globl udirty_user, udirty_user_end
udirty_user:
    movq ST_BASE(%rdi), %r8
    movq ST_PAGES(%rdi), %r9
    movq ST_TSC_PER_PAGE(%rdi), %r10
    movq ST_SLICE_END(%rdi), %r11
    movq ST_NEXT_DUE(%rdi), %r12
    movq ST_MAX_LAG(%rdi), %r13
    movq ST_CURSOR(%rdi), %r14
    movq ST_GEN(%rdi), %r15
    movq ST_WRITTEN(%rdi), %rbx
1:  rdtsc
    shlq $32, %rdx
    orq %rdx, %rax                /* rax = now */
    cmpq %r11, %rax
    jae 9f                        /* slice over */
    cmpq ST_SLICE_START(%rdi), %rax
    jb 9f                         /* the TSC went back */
    testq %r10, %r10
    jz 3f                         /* flat out */
    cmpq %r12, %rax
    jae 2f
    /* not due yet; a due time further ahead than a page plus the lag bound means the TSC jumped back: due now */
    movq %r12, %rsi
    subq %rax, %rsi
    movq %r13, %rcx
    addq %r10, %rcx
    cmpq %rcx, %rsi
    ja 4f
    pause
    jmp 1b
4:  movq %rax, %r12
2:  /* due: a backlog beyond max_lag (the vCPU did not run) is dropped, not caught up in a burst */
    movq %rax, %rsi
    subq %r12, %rsi
    cmpq %r13, %rsi
    jbe 5f
    movq %rax, %r12
    subq %r13, %r12
5:  addq %r10, %r12
3:  movq %r14, %rsi
    shlq $12, %rsi
    movq %r15, (%r8,%rsi)
    incq %rbx
    incq %r14
    cmpq %r9, %r14
    jb 1b
    xorl %r14d, %r14d
    incq %r15
    jmp 1b
9:  movq %r12, ST_NEXT_DUE(%rdi)
    movq %r14, ST_CURSOR(%rdi)
    movq %r15, ST_GEN(%rdi)
    movq %rbx, ST_WRITTEN(%rdi)
    ud2                           /* back to the kernel: user_enter returns */
udirty_user_end:
