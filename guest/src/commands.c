/* Command interpreter: poweroff, reboot, exit N, info, crash, pio N, pit, lspci, rng N, rngbad, fb, vfu. */
#include "commands.h"
#include "acpi.h"
#include "acpi_events.h"
#include "apic.h"
#include "layout.h"
#include "bootinfo.h"
#include "display.h"
#include "idt.h"
#include "io.h"
#include "lib.h"
#include "mptable.h"
#include "pci.h"
#include "smp.h"
#include "timer.h"
#include "virtio_rng.h"
#include "virtio_net.h"
#include "virtio_balloon.h"
#include "virtio_mem.h"
#include "virtio_vsock.h"
#include "virtio_blk.h"
#include "vfu.h"
#include "workload.h"

#define DEBUG_EXIT_PORT 0xf4
#define POST_PORT 0x80

void print_info(void)
{
    u64 bytes = bootinfo_usable_bytes();
    u64 mib = (bytes + (1ULL << 20) - 1) >> 20;
    kprintf("cpus: acpi=%u mp=%u online=%u max=%u\n", acpi.cpus_enabled, mp.cpus, smp_online(), acpi.cpus_max);
    kprintf("memory: %lu MiB\n", mib);
    acpi_print_cpus();
    acpi_print_pci_hotplug();
}

static void cmd_reboot(void)
{
    outb(0x64, 0xfe);              /* i8042 pulse reset line */
    udelay(100000);
    if (acpi.fadt_flags & FADT_F_RESET_REG_SUP)
        acpi_gas_write8(&acpi.reset_reg, acpi.reset_value);
    udelay(100000);
    triple_fault();
}

static volatile u32 pit_ticks;

static void pit_irq(u8 vector)
{
    (void)vector;
    pit_ticks++;
}

/* The 8254 timer the way an OS finds it: ISA IRQ0 through the IOAPIC at the GSI the MADT's override names
 * (GSI 2), channel 0 in rate-generator mode at 100 Hz for 200 ms; prints the ticks seen (about 20). */
static void cmd_pit(void)
{
    u32 gsi;
    u16 flags;
    acpi_isa_irq(0, &gsi, &flags);
    u64 ioapic = acpi.have_ioapic ? acpi.ioapic_addr : 0xfec00000;
    u32 gsi_base = acpi.have_ioapic ? acpi.ioapic_gsi_base : 0;
    const u32 latch = 1193182u / 100;
    pit_ticks = 0;
    irq_register(VEC_PIT, pit_irq);
    outb(0x43, 0x34); /* channel 0, lo/hi, mode 2, binary */
    outb(0x40, latch & 0xff);
    outb(0x40, latch >> 8);
    if (ioapic_route(ioapic, gsi_base, gsi, VEC_PIT, flags, lapic_id()) != 0) {
        kprintf("pit: no IOAPIC pin for GSI %u\n", gsi);
        return;
    }
    sti();
    udelay(200000);
    cli();
    ioapic_mask(ioapic, gsi_base, gsi);
    outb(0x43, 0x30); /* channel 0, mode 0: stops after one count, never reloaded */
    outb(0x40, 0xff);
    outb(0x40, 0xff);
    kprintf("pit: irq0 gsi=%u ticks=%u\n", gsi, pit_ticks);
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    usize n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = 0;
    return s;
}

/* Splits "word rest" in place; returns rest ("" if none). */
static char *split_arg(char *s)
{
    while (*s && *s != ' ' && *s != '\t')
        s++;
    if (!*s)
        return s;
    *s++ = 0;
    return trim(s);
}

void run_command(char *line)
{
    char *orig = trim(line);
    if (!*orig)
        return;
    char full[256];
    strlcpy(full, orig, sizeof(full));
    char *arg = split_arg(orig);
    const char *cmd = orig;
    u64 n;

    if (!strcmp(cmd, "info") && !*arg) {
        print_info();
    } else if (!strcmp(cmd, "poweroff") && !*arg) {
        acpi_poweroff();
        udelay(100000);
        kprintf("poweroff: failed\n");
    } else if (!strcmp(cmd, "reboot") && !*arg) {
        cmd_reboot();
    } else if (!strcmp(cmd, "exit")) {
        if (parse_u64(arg, &n) || n > 255)
            kprintf("usage: exit N (0-255)\n");
        else
            outb(DEBUG_EXIT_PORT, (u8)n);
    } else if (!strcmp(cmd, "crash") && !*arg) {
        triple_fault();
    } else if (!strcmp(cmd, "pio")) {
        if (parse_u64(arg, &n)) {
            kprintf("usage: pio N\n");
        } else {
            /* Exactly `out; dec; jnz` per iteration, as bench/KvmPS.Bench/Native/pio_loop.c runs: guest CPL0
             * instructions are emulated on some hosts, so the benchmark's two loops must be the same code. */
            for (u64 left = n; left > 0;) {
                u32 chunk = left > 0xffffffffu ? 0xffffffffu : (u32)left;
                __asm__ volatile("1: outb %%al, $0x80\n\tdecl %%ecx\n\tjnz 1b" : "+c"(chunk) : "a"(0) : "memory");
                left -= left > 0xffffffffu ? 0xffffffffu : left;
            }
            kprintf("pio: done %lu\n", n);
        }
    } else if (!strcmp(cmd, "pit") && !*arg) {
        cmd_pit();
    } else if (!strcmp(cmd, "lspci") && !*arg) {
        pci_list();
    } else if (!strcmp(cmd, "rng")) {
        if (parse_u64(arg, &n))
            kprintf("usage: rng N (1-%u)\n", RNG_MAX_BYTES);
        else
            cmd_rng(n);
    } else if (!strcmp(cmd, "rngbad") && !*arg) {
        cmd_rng_bad();
    } else if (!strcmp(cmd, "net")) {
        cmd_net(arg);
    } else if (!strcmp(cmd, "mem")) {
        if (strncmp(arg, "touch ", 6) || parse_u64(trim(arg + 6), &n))
            kprintf("usage: mem touch MiB\n");
        else
            cmd_mem_touch(n);
    } else if (!strcmp(cmd, "balloon") && !*arg) {
        cmd_balloon();
    } else if (!strcmp(cmd, "balloon") && !strcmp(arg, "stats")) {
        cmd_balloon_stats();
    } else if (!strcmp(cmd, "vmem")) {
        cmd_vmem(arg);
    } else if (!strcmp(cmd, "vsock")) {
        char *rest = split_arg(arg);
        char *text = split_arg(rest);
        if (!strcmp(arg, "cid") && !*rest)
            cmd_vsock_cid();
        else if (!strcmp(arg, "listen") && !parse_u64(rest, &n) && n <= 0xffffffffULL && !*text)
            cmd_vsock_listen(n);
        else if (!strcmp(arg, "connect") && !parse_u64(rest, &n) && n <= 0xffffffffULL && *text)
            cmd_vsock_connect(n, text);
        else
            kprintf("usage: vsock cid | vsock listen PORT | vsock connect PORT TEXT\n");
    } else if (!strcmp(cmd, "blk")) {
        cmd_blk(arg);
    } else if (!strcmp(cmd, "work")) {
        cmd_work(arg);
    } else if (!strcmp(cmd, "fb")) {
        cmd_fb(arg);
    } else if (!strcmp(cmd, "vfu")) {
        cmd_vfu(arg);
    } else {
        kprintf("unknown command: %s\n", full);
    }
}
