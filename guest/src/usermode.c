/* Ring 3 on the BSP (usermode.h). An interrupt from ring 3 switches to the TSS's RSP0: user_enter points it just
   below its own frame, so the kernel stack of the caller stays intact and ring 3's `ud2` can unwind to it. */
#include "usermode.h"
#include "idt.h"
#include "io.h"
#include "layout.h"
#include "lib.h"

struct tss64 {
    u32 reserved0;
    u64 rsp0, rsp1, rsp2;
    u64 reserved1;
    u64 ist[7];
    u64 reserved2;
    u16 reserved3;
    u16 iomap_base;
} PACKED;

struct tss64 user_tss __attribute__((aligned(16))); /* usermode_entry.S writes rsp0 */
extern u64 gdt_tss[2];
extern const u8 user_ud_stub[];

#define PTE_P 1UL
#define PTE_US 4UL
#define PTE_PS 0x80UL
#define PTE_ADDR 0x000ffffffffff000UL

int user_init(void)
{
    static int done;
    if (done)
        return 0;
    u64 base = (u64)(uptr)&user_tss, limit = sizeof(user_tss) - 1;
    user_tss.iomap_base = sizeof(user_tss); /* no I/O bitmap: ring 3 has no port access */
    /* Written whole before ltr: a reboot that kept guest RAM leaves the busy bit (type 0xb) set, and ltr of a busy TSS faults. */
    gdt_tss[0] = (limit & 0xffff) | (base & 0xffffff) << 16 | 0x89UL << 40 /* present, available 64-bit TSS */
                 | ((limit >> 16) & 0xf) << 48 | ((base >> 24) & 0xff) << 56;
    gdt_tss[1] = base >> 32;
    __asm__ volatile("ltr %w0" : : "r"(GDT_TSS) : "memory");
    idt_set_gate(6, (u64)(uptr)user_ud_stub, 0); /* #UD: ring 3's way back (usermode_entry.S) */
    done = 1;
    return 0;
}

static u64 *table_of(u64 entry) { return (u64 *)(uptr)(entry & PTE_ADDR); }

int user_map(u64 start, u64 end)
{
    u64 *pml4 = table_of(read_cr3());
    for (u64 a = start & ~((2UL << 20) - 1); a < end; a += 2UL << 20) {
        u64 *e4 = &pml4[(a >> 39) & 511];
        if (!(*e4 & PTE_P))
            goto unmapped;
        *e4 |= PTE_US;
        u64 *e3 = &table_of(*e4)[(a >> 30) & 511];
        if (!(*e3 & PTE_P))
            goto unmapped;
        if (*e3 & PTE_PS) {
            kprintf("user: 0x%lx is in a 1 GiB page; only 2 MiB and 4 KiB pages can be made user-accessible\n", a);
            return -1;
        }
        *e3 |= PTE_US;
        u64 *e2 = &table_of(*e3)[(a >> 21) & 511];
        if (!(*e2 & PTE_P))
            goto unmapped;
        *e2 |= PTE_US;
        if (!(*e2 & PTE_PS)) {
            u64 *pt = table_of(*e2);
            for (int i = 0; i < 512; i++)
                if (pt[i] & PTE_P)
                    pt[i] |= PTE_US;
        }
        continue;
    unmapped:
        kprintf("user: 0x%lx is not mapped\n", a);
        return -1;
    }
    __asm__ volatile("mov %%cr3, %%rax; mov %%rax, %%cr3" : : : "rax", "memory"); /* drop cached translations */
    return 0;
}
