/* Boot information: e820 / PVH memory map, RSDP pointer and kernel command line. */
#include "bootinfo.h"
#include "io.h"
#include "lib.h"

struct bootinfo boot_info;

/* Linux boot_params offsets (Documentation/arch/x86/zero-page.rst). */
#define BP_ACPI_RSDP_ADDR 0x070
#define BP_EXT_CMD_LINE_PTR 0x0c8
#define BP_E820_ENTRIES 0x1e8
#define BP_CMD_LINE_PTR 0x228
#define BP_E820_TABLE 0x2d0
#define BP_E820_MAX 128

/* PVH hvm_start_info (xen/include/public/arch-x86/hvm/start_info.h). */
#define HVM_START_MAGIC 0x336ec578
struct hvm_start_info {
    u32 magic;
    u32 version;
    u32 flags;
    u32 nr_modules;
    u64 modlist_paddr;
    u64 cmdline_paddr;
    u64 rsdp_paddr;
    u64 memmap_paddr;   /* version >= 1 */
    u32 memmap_entries; /* version >= 1 */
    u32 reserved;
} PACKED;

struct hvm_memmap_entry {
    u64 addr;
    u64 size;
    u32 type;
    u32 reserved;
} PACKED;

static void copy_cmdline(u64 addr)
{
    if (!addr || addr >= 0x100000000ULL)
        return;
    const char *src = (const char *)(uptr)addr;
    usize i = 0;
    while (i < BI_CMDLINE_MAX - 1 && src[i]) {
        boot_info.cmdline[i] = src[i];
        i++;
    }
    boot_info.cmdline[i] = 0;
}

static void add_mem(u64 addr, u64 size, u32 type)
{
    if (boot_info.nmem >= BI_MAX_MEM)
        return;
    struct mem_range *m = &boot_info.mem[boot_info.nmem++];
    m->addr = addr;
    m->size = size;
    m->type = type;
}

static u8 cmos_read(u8 reg)
{
    outb(0x70, reg);
    return inb(0x71);
}

/* Last resort if the loader gave no memory map: QEMU/SeaBIOS-style CMOS sizing. */
static void mem_from_cmos(void)
{
    u64 below16m = ((u64)cmos_read(0x31) << 8 | cmos_read(0x30)) * 1024;          /* KiB above 1M */
    u64 above16m = ((u64)cmos_read(0x35) << 8 | cmos_read(0x34)) * 65536;         /* 64K units */
    u64 above4g = ((u64)cmos_read(0x5d) << 16 | (u64)cmos_read(0x5c) << 8 | cmos_read(0x5b)) * 65536;
    if (below16m == 0xffffULL * 1024 && above16m == 0xffffULL * 65536)
        return; /* no CMOS */
    add_mem(0, 0x9fc00, E820_USABLE);
    if (above16m)
        add_mem(0x100000, 0xf00000 + above16m, E820_USABLE);
    else if (below16m)
        add_mem(0x100000, below16m, E820_USABLE);
    if (above4g)
        add_mem(0x100000000ULL, above4g, E820_USABLE);
}

void bootinfo_init(int protocol, u64 info_addr)
{
    boot_info.protocol = protocol;
    if (protocol == BOOT_LINUX64 && info_addr) {
        const u8 *bp = (const u8 *)(uptr)info_addr;
        boot_info.rsdp = *(const u64 *)(bp + BP_ACPI_RSDP_ADDR);
        u32 n = bp[BP_E820_ENTRIES];
        if (n > BP_E820_MAX)
            n = BP_E820_MAX;
        for (u32 i = 0; i < n; i++) {
            const u8 *e = bp + BP_E820_TABLE + i * 20;
            add_mem(*(const u64 *)e, *(const u64 *)(e + 8), *(const u32 *)(e + 16));
        }
        u64 cl = *(const u32 *)(bp + BP_CMD_LINE_PTR) | (u64)*(const u32 *)(bp + BP_EXT_CMD_LINE_PTR) << 32;
        copy_cmdline(cl);
    } else if (protocol == BOOT_PVH && info_addr) {
        const struct hvm_start_info *si = (const struct hvm_start_info *)(uptr)info_addr;
        if (si->magic == HVM_START_MAGIC) {
            boot_info.rsdp = si->rsdp_paddr;
            copy_cmdline(si->cmdline_paddr);
            if (si->version >= 1 && si->memmap_paddr && si->memmap_paddr < 0x100000000ULL) {
                const struct hvm_memmap_entry *e = (const void *)(uptr)si->memmap_paddr;
                for (u32 i = 0; i < si->memmap_entries; i++)
                    add_mem(e[i].addr, e[i].size, e[i].type);
            }
        }
    }
    if (boot_info.nmem == 0)
        mem_from_cmos();
}

u64 bootinfo_usable_bytes(void)
{
    u64 total = 0;
    for (u32 i = 0; i < boot_info.nmem; i++)
        if (boot_info.mem[i].type == E820_USABLE)
            total += boot_info.mem[i].size;
    return total;
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Finds `name` at a word start; returns pointer just after it. The following char must be in
 * `term` (a NUL-terminated set that also matches the end of the line), or anything if term is NULL. */
static const char *find_word(const char *name, const char *term)
{
    usize n = strlen(name);
    const char *s = boot_info.cmdline;
    int in_quote = 0;
    for (usize i = 0; s[i]; i++) {
        if (s[i] == '"')
            in_quote = !in_quote;
        if (in_quote || (i > 0 && !is_space(s[i - 1])))
            continue;
        if (strncmp(s + i, name, n) == 0) {
            char c = s[i + n];
            if (!term)
                return s + i + n;
            for (const char *t = term; ; t++) {
                if (*t == c)
                    return s + i + n;
                if (!*t)
                    break;
            }
        }
    }
    return NULL;
}

int cmdline_has(const char *name)
{
    /* terminators: NUL (matched by the loop's final check), space, tab, '=' */
    return find_word(name, " \t=") != NULL;
}

/* Does the word at s look like the start of another parameter? */
static int starts_param(const char *s)
{
    if (strncmp(s, "kvmps.", 6) == 0)
        return 1;
    for (; *s && !is_space(*s); s++)
        if (*s == '=')
            return 1;
    return 0;
}

int cmdline_get(const char *key, char *out, usize out_size)
{
    char k[64];
    usize kl = strlcpy(k, key, sizeof(k) - 1);
    k[kl] = '=';
    k[kl + 1] = 0;
    const char *v = find_word(k, NULL);
    if (!v)
        return 0;
    usize n = 0;
    if (*v == '"') {
        v++;
        while (v[n] && v[n] != '"')
            n++;
    } else {
        while (v[n]) {
            if (is_space(v[n])) {
                usize j = n;
                while (is_space(v[j]))
                    j++;
                if (!v[j] || starts_param(v + j))
                    break;
                n = j;
                continue;
            }
            n++;
        }
    }
    if (n >= out_size)
        n = out_size - 1;
    memcpy(out, v, n);
    out[n] = 0;
    return 1;
}
