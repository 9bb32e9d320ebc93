/* KvmPS built-in guest: boot, discover CPUs/memory, start APs, run the console. */
#include "acpi.h"
#include "acpi_events.h"
#include "apic.h"
#include "bootinfo.h"
#include "commands.h"
#include "console.h"
#include "idt.h"
#include "io.h"
#include "lib.h"
#include "mptable.h"
#include "smp.h"
#include "timer.h"
#include "uart.h"
#include "virtio_mem.h"

static void run_boot_commands(void)
{
    static char cmds[BI_CMDLINE_MAX];
    if (!cmdline_get("kvmps.run", cmds, sizeof(cmds)))
        return;
    char *p = cmds;
    while (*p) {
        char *c = p;
        while (*p && *p != ',')
            p++;
        if (*p)
            *p++ = 0;
        kprintf("> %s\n", c);
        run_command(c);
    }
}

void kmain(int protocol, u64 info)
{
    bootinfo_init(protocol, info); /* first: copy out of loader-owned memory */
    uart_init();
    idt_init();
    kprintf("KvmPS built-in guest v1\n");

    acpi_init(boot_info.rsdp);
    mptable_init();
    timer_init(acpi.pm_tmr, acpi.pm_tmr_32bit);
    pic_disable();
    lapic_init(acpi.lapic_addr);
    smp_boot();
    acpi_events_init();
    vmem_start();

    print_info();
    kprintf("ready\n");

    console_init(cmdline_has("kvmps.poll"));
    run_boot_commands();
    console_run();
}
