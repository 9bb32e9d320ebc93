/* ACPI table discovery. All tables are expected below 4 GiB (identity mapped). */
#include "acpi.h"
#include "io.h"
#include "lib.h"

struct acpi_info acpi;

struct sdt_header {
    char sig[4];
    u32 length;
    u8 revision;
    u8 checksum;
    char oem_id[6];
    char oem_table_id[8];
    u32 oem_revision;
    u32 creator_id;
    u32 creator_revision;
} PACKED;

static u8 checksum(const void *p, usize n)
{
    const u8 *b = p;
    u8 s = 0;
    while (n--)
        s += *b++;
    return s;
}

static int rsdp_valid(u64 addr)
{
    const u8 *p = (const u8 *)(uptr)addr;
    if (memcmp(p, "RSD PTR ", 8) != 0 || checksum(p, 20) != 0)
        return 0;
    if (p[15] >= 2) {
        u32 len = *(const u32 *)(p + 20);
        if (len < 36 || len > 4096 || checksum(p, len) != 0)
            return 0;
    }
    return 1;
}

static u64 scan_rsdp(u64 start, u64 end)
{
    for (u64 a = start; a + 20 <= end; a += 16)
        if (rsdp_valid(a))
            return a;
    return 0;
}

static u64 find_rsdp(u64 hint)
{
    if (hint && hint < 0x100000000ULL && rsdp_valid(hint))
        return hint;
    u64 ebda = (u64)*(volatile u16 *)0x40e << 4;
    if (ebda >= 0x80000 && ebda < 0xa0000) {
        u64 r = scan_rsdp(ebda, ebda + 1024);
        if (r)
            return r;
    }
    return scan_rsdp(0xe0000, 0x100000);
}

static const struct sdt_header *map_sdt(u64 addr)
{
    if (!addr || addr >= 0x100000000ULL)
        return NULL;
    const struct sdt_header *h = (const void *)(uptr)addr;
    if (h->length < sizeof(*h) || h->length > (16u << 20))
        return NULL;
    if (checksum(h, h->length) != 0)
        return NULL;
    return h;
}

static void parse_madt(const struct sdt_header *h)
{
    const u8 *p = (const u8 *)h;
    acpi.have_madt = 1;
    acpi.lapic_addr = *(const u32 *)(p + 36);
    u32 off = 44;
    while (off + 2 <= h->length) {
        u8 type = p[off], len = p[off + 1];
        if (len < 2 || off + len > h->length)
            break;
        const u8 *e = p + off;
        u32 apic_id = 0, flags = 0;
        int cpu = 0;
        if (type == 0 && len >= 8) { /* Processor Local APIC */
            apic_id = e[3];
            flags = *(const u32 *)(e + 4);
            cpu = 1;
        } else if (type == 9 && len >= 16) { /* Processor Local x2APIC */
            apic_id = *(const u32 *)(e + 4);
            flags = *(const u32 *)(e + 8);
            cpu = 1;
        } else if (type == 1 && len >= 12) { /* I/O APIC */
            if (!acpi.have_ioapic) {
                acpi.have_ioapic = 1;
                acpi.ioapic_addr = *(const u32 *)(e + 4);
                acpi.ioapic_gsi_base = *(const u32 *)(e + 8);
            }
        } else if (type == 2 && len >= 10) { /* Interrupt Source Override */
            if (e[2] == 0 && acpi.niso < ACPI_MAX_ISO) {
                struct acpi_iso *iso = &acpi.iso[acpi.niso++];
                iso->irq = e[3];
                iso->gsi = *(const u32 *)(e + 4);
                iso->flags = *(const u16 *)(e + 8);
            }
        } else if (type == 5 && len >= 12) { /* Local APIC Address Override */
            acpi.lapic_addr = *(const u64 *)(e + 4);
        }
        if (cpu) {
            u32 uid = type == 0 ? e[2] : *(const u32 *)(e + 12);
            if ((flags & 3) && uid < ACPI_MAX_CPUS) {
                acpi.uid_apic[uid] = apic_id;
                if (uid + 1 > acpi.nuids)
                    acpi.nuids = uid + 1;
            }
            if (flags & 1) {
                acpi.cpus_enabled++;
                if (acpi.napic_ids < ACPI_MAX_CPUS)
                    acpi.apic_ids[acpi.napic_ids++] = apic_id;
            }
            if (flags & 3)
                acpi.cpus_max++;
        }
        off += len;
    }
}

static void decode_gas(const u8 *g, struct acpi_gas *out)
{
    out->space = g[0];
    out->width = g[1];
    out->addr = *(const u64 *)(g + 4);
}

/*
 * Find "\_S5_" in the DSDT AML: NameOp(0x08) [RootChar] "_S5_" PackageOp(0x12) PkgLength
 * NumElements, then the first element (SLP_TYPa) as ZeroOp/OneOp/BytePrefix.
 */
static void parse_s5(const struct sdt_header *dsdt)
{
    const u8 *p = (const u8 *)dsdt;
    u32 len = dsdt->length;
    for (u32 i = sizeof(*dsdt); i + 8 < len; i++) {
        if (memcmp(p + i, "_S5_", 4) != 0)
            continue;
        if (!(p[i - 1] == 0x08 || (p[i - 1] == '\\' && p[i - 2] == 0x08)))
            continue;
        u32 j = i + 4;
        if (p[j] != 0x12)
            continue;
        j++;
        j += 1 + (p[j] >> 6); /* PkgLength: lead byte + 0..3 follow bytes */
        j++;                  /* NumElements */
        if (j >= len)
            return;
        u8 op = p[j];
        if (op == 0x00 || op == 0x01) {
            acpi.s5_typ = op;
        } else if (op == 0x0a && j + 1 < len) {
            acpi.s5_typ = p[j + 1];
        } else if (op == 0xff) { /* OnesOp: not meaningful */
            return;
        } else {
            return;
        }
        acpi.have_s5 = 1;
        return;
    }
}

static void parse_fadt(const struct sdt_header *h)
{
    const u8 *p = (const u8 *)h;
    u32 len = h->length;
    acpi.have_fadt = 1;
    if (len >= 48)
        acpi.sci_int = *(const u16 *)(p + 46);
    if (len >= 53) {
        acpi.smi_cmd = (u16)*(const u32 *)(p + 48);
        acpi.acpi_enable = p[52];
    }
    if (len >= 60)
        acpi.pm1a_evt = (u16)*(const u32 *)(p + 56);
    if (len >= 84)
        acpi.gpe0_blk = (u16)*(const u32 *)(p + 80);
    if (len >= 93)
        acpi.gpe0_len = p[92];
    if (len >= 116)
        acpi.fadt_flags = *(const u32 *)(p + 112);
    if (len >= 68)
        acpi.pm1a_cnt = (u16)*(const u32 *)(p + 64);
    if (len >= 80)
        acpi.pm_tmr = (u16)*(const u32 *)(p + 76);
    acpi.pm_tmr_32bit = (acpi.fadt_flags & FADT_F_TMR_VAL_EXT) != 0;
    if (len >= 129) {
        decode_gas(p + 116, &acpi.reset_reg);
        acpi.reset_value = p[128];
    }
    /* Prefer the extended (X_) blocks when they name I/O ports. */
    if (len >= 160) {
        struct acpi_gas g;
        decode_gas(p + 148, &g);
        if (g.space == 1 && g.addr && g.addr < 0x10000)
            acpi.pm1a_evt = (u16)g.addr;
    }
    if (len >= 232) {
        struct acpi_gas g;
        decode_gas(p + 220, &g);
        if (g.space == 1 && g.addr && g.addr < 0x10000)
            acpi.gpe0_blk = (u16)g.addr;
    }
    if (len >= 184) {
        struct acpi_gas g;
        decode_gas(p + 172, &g);
        if (g.space == 1 && g.addr && g.addr < 0x10000)
            acpi.pm1a_cnt = (u16)g.addr;
    }
    if (len >= 220) {
        struct acpi_gas g;
        decode_gas(p + 208, &g);
        if (g.space == 1 && g.addr && g.addr < 0x10000)
            acpi.pm_tmr = (u16)g.addr;
    }
    if (len >= 256)
        decode_gas(p + 244, &acpi.sleep_ctl);
    u64 dsdt = 0;
    if (len >= 148)
        dsdt = *(const u64 *)(p + 140);
    if (!dsdt && len >= 44)
        dsdt = *(const u32 *)(p + 40);
    const struct sdt_header *d = map_sdt(dsdt);
    if (d && memcmp(d->sig, "DSDT", 4) == 0) {
        acpi.dsdt = dsdt;
        parse_s5(d);
    }
}

void acpi_init(u64 rsdp_hint)
{
    acpi.lapic_addr = 0xfee00000;
    for (u32 i = 0; i < ACPI_MAX_CPUS; i++)
        acpi.uid_apic[i] = 0xffffffffu;
    u64 rsdp = find_rsdp(rsdp_hint);
    if (!rsdp)
        return;
    acpi.rsdp = rsdp;
    const u8 *r = (const u8 *)(uptr)rsdp;
    u64 xsdt = r[15] >= 2 ? *(const u64 *)(r + 24) : 0;
    u64 rsdt = *(const u32 *)(r + 16);
    const struct sdt_header *root = map_sdt(xsdt);
    u32 esize = 8;
    if (!root || memcmp(root->sig, "XSDT", 4) != 0) {
        root = map_sdt(rsdt);
        esize = 4;
        if (!root || memcmp(root->sig, "RSDT", 4) != 0)
            return;
    }
    u32 n = (root->length - sizeof(*root)) / esize;
    const u8 *ents = (const u8 *)root + sizeof(*root);
    for (u32 i = 0; i < n; i++) {
        u64 a = esize == 8 ? *(const u64 *)(ents + i * 8) : *(const u32 *)(ents + i * 4);
        const struct sdt_header *h = map_sdt(a);
        if (!h)
            continue;
        if (memcmp(h->sig, "APIC", 4) == 0 && !acpi.have_madt)
            parse_madt(h);
        else if (memcmp(h->sig, "FACP", 4) == 0 && !acpi.have_fadt)
            parse_fadt(h);
    }
}

void acpi_isa_irq(u8 irq, u32 *gsi, u16 *flags)
{
    *gsi = irq;
    *flags = 0;
    for (u32 i = 0; i < acpi.niso; i++) {
        if (acpi.iso[i].irq == irq) {
            *gsi = acpi.iso[i].gsi;
            *flags = acpi.iso[i].flags;
            return;
        }
    }
}

void acpi_gas_write8(const struct acpi_gas *g, u8 v)
{
    if (!g->addr)
        return;
    if (g->space == 1 && g->addr < 0x10000)
        outb((u16)g->addr, v);
    else if (g->space == 0 && g->addr < 0x100000000ULL)
        mmio_write8(g->addr, v);
}

void acpi_poweroff(void)
{
    u8 typ = acpi.have_s5 ? acpi.s5_typ : 5;
    if ((acpi.fadt_flags & FADT_F_HW_REDUCED) || (!acpi.pm1a_cnt && acpi.sleep_ctl.addr)) {
        /* HW-reduced ACPI: SLP_TYP in bits 2-4, SLP_EN = bit 5 of the sleep control register. */
        acpi_gas_write8(&acpi.sleep_ctl, (u8)(((typ & 7) << 2) | (1 << 5)));
        return;
    }
    u16 port = acpi.pm1a_cnt ? acpi.pm1a_cnt : 0x604;
    outw(port, (u16)(((typ & 7) << 10) | (1 << 13)));
}

/* An AML integer constant at p (ZeroOp, OneOp, Byte/Word/DWordPrefix); returns its length, 0 if none. */
static u32 aml_integer(const u8 *p, const u8 *end, u32 *value)
{
    if (p >= end)
        return 0;
    switch (p[0]) {
    case 0x00: *value = 0; return 1;
    case 0x01: *value = 1; return 1;
    case 0x0a: if (p + 2 > end) return 0; *value = p[1]; return 2;
    case 0x0b: if (p + 3 > end) return 0; *value = *(const u16 *)(p + 1); return 3;
    case 0x0c: if (p + 5 > end) return 0; *value = *(const u32 *)(p + 1); return 5;
    default: return 0;
    }
}

/* The first byte b in [p, end), or end. One repne scasb: guest kernel code may be emulated instruction by
 * instruction (nested PVM hosts), and a DSDT with hundreds of processor objects is tens of KiB. */
static const u8 *find_byte(const u8 *p, const u8 *end, u8 b)
{
    if (p >= end)
        return end;
    u64 count = (u64)(end - p);
    const u8 *at = p;
    __asm__ volatile("repne scasb" : "+D"(at), "+c"(count) : "a"(b) : "memory", "cc");
    return at[-1] == b ? at - 1 : end;
}

int acpi_dsdt_io_region(const char *name, u16 *port, u16 *length)
{
    const struct sdt_header *d = (const void *)(uptr)acpi.dsdt; /* checked by parse_fadt */
    if (!d)
        return -1;
    const u8 *p = (const u8 *)d, *end = p + d->length;
    /* OperationRegion: ExtOpPrefix 0x5b, OpRegionOp 0x80, NameSeg, RegionSpace, offset, length. */
    for (const u8 *q = find_byte(p + sizeof(*d), end, 0x5b); q + 7 <= end; q = find_byte(q + 1, end, 0x5b)) {
        if (q[1] != 0x80 || memcmp(q + 2, name, 4) != 0 || q[6] != 1 /* SystemIO */)
            continue;
        u32 offset, len;
        u32 n = aml_integer(q + 7, end, &offset);
        if (!n || !aml_integer(q + 7 + n, end, &len) || offset > 0xffff || len > 0xffff)
            return -1;
        *port = (u16)offset;
        *length = (u16)len;
        return 0;
    }
    return -1;
}

static int hex_digit(u8 c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int acpi_dsdt_gpe_calling(const char *method)
{
    const struct sdt_header *d = (const void *)(uptr)acpi.dsdt; /* checked by parse_fadt */
    if (!d)
        return -1;
    const u8 *p = (const u8 *)d, *end = p + d->length;
    /* Method: MethodOp 0x14, PkgLength (lead byte: bits 6-7 = follow bytes), NameSeg "_Exx", flags, body. */
    for (const u8 *q = find_byte(p + sizeof(*d), end, 0x14); q + 2 < end; q = find_byte(q + 1, end, 0x14)) {
        u32 follow = q[1] >> 6, pkglen = follow ? q[1] & 0x0f : q[1] & 0x3f;
        for (u32 i = 0; i < follow; i++)
            pkglen |= (u32)q[2 + i] << (4 + 8 * i);
        const u8 *name = q + 2 + follow, *body_end = q + 1 + pkglen;
        if (name + 4 > end || body_end > end || name[0] != '_' || name[1] != 'E')
            continue;
        int hi = hex_digit(name[2]), lo = hex_digit(name[3]);
        if (hi < 0 || lo < 0)
            continue;
        for (const u8 *b = name + 4; b + 4 <= body_end; b++)
            if (memcmp(b, method, 4) == 0)
                return hi * 16 + lo;
    }
    return -1;
}
