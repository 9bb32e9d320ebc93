/* Normalized boot information, filled from Linux boot_params or a PVH hvm_start_info. */
#ifndef KVMPS_BOOTINFO_H
#define KVMPS_BOOTINFO_H

#include "types.h"
#include "layout.h"

/* BOOT_LINUX64 (64-bit entry, RSI = boot_params) and BOOT_PVH (EBX = hvm_start_info) */

#define BI_MAX_MEM 128
#define BI_CMDLINE_MAX 4096

#define E820_USABLE 1

struct mem_range {
    u64 addr;
    u64 size;
    u32 type;
};

struct bootinfo {
    int protocol;          /* BOOT_LINUX64 or BOOT_PVH */
    u64 rsdp;              /* 0 if the loader did not give one */
    u32 nmem;
    struct mem_range mem[BI_MAX_MEM];
    char cmdline[BI_CMDLINE_MAX];
};

extern struct bootinfo boot_info;

/* Must run first: copies everything out of loader-owned memory. */
void bootinfo_init(int protocol, u64 info_addr);

u64 bootinfo_usable_bytes(void);

/* Returns 1 if the command line contains the bare word or key `name` (e.g. "kvmps.poll"). */
int cmdline_has(const char *name);

/*
 * Copies the value of `key=` (e.g. "kvmps.run") into out. The value may be double-quoted;
 * unquoted, it extends up to the next space-separated word that contains '=' or starts
 * with "kvmps." (so "kvmps.run=info,exit 3" works). Returns 1 if found.
 */
int cmdline_get(const char *key, char *out, usize out_size);

#endif
