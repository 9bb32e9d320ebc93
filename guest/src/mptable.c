/* MP table: floating pointer "_MP_" -> configuration table "PCMP" -> processor entries. */
#include "mptable.h"
#include "lib.h"

struct mp_info mp;

static u8 sum8(const u8 *p, usize n)
{
    u8 s = 0;
    while (n--)
        s += *p++;
    return s;
}

static const u8 *scan_mpfp(u64 start, u64 end)
{
    for (u64 a = start; a + 16 <= end; a += 16) {
        const u8 *p = (const u8 *)(uptr)a;
        if (memcmp(p, "_MP_", 4) == 0 && p[8] == 1 && sum8(p, 16) == 0)
            return p;
    }
    return NULL;
}

static const u8 *find_mpfp(void)
{
    const u8 *p = NULL;
    u64 ebda = (u64)*(volatile u16 *)0x40e << 4;
    if (ebda >= 0x80000 && ebda < 0xa0000)
        p = scan_mpfp(ebda, ebda + 1024);
    if (!p) {
        u64 basemem = (u64)*(volatile u16 *)0x413 * 1024;
        if (basemem >= 0x80000 && basemem <= 0xa0000)
            p = scan_mpfp(basemem - 1024, basemem);
    }
    if (!p)
        p = scan_mpfp(0x9fc00, 0xa0000);
    if (!p)
        p = scan_mpfp(0xe0000, 0x100000);
    return p;
}

static void add_cpu(u8 apic_id)
{
    mp.cpus++;
    if (mp.napic_ids < MP_MAX_CPUS)
        mp.apic_ids[mp.napic_ids++] = apic_id;
}

void mptable_init(void)
{
    const u8 *fp = find_mpfp();
    if (!fp)
        return;
    mp.found = 1;
    u32 cfg = *(const u32 *)(fp + 4);
    if (fp[11] != 0 || !cfg) {
        /* Default configuration (feature byte 1 != 0): two processors, APIC IDs 0 and 1. */
        if (fp[11] != 0) {
            add_cpu(0);
            add_cpu(1);
        }
        return;
    }
    const u8 *t = (const u8 *)(uptr)cfg;
    u16 len = *(const u16 *)(t + 4);
    if (memcmp(t, "PCMP", 4) != 0 || len < 44 || sum8(t, len) != 0)
        return;
    u16 count = *(const u16 *)(t + 34);
    u32 off = 44;
    for (u16 i = 0; i < count && off < len; i++) {
        u8 type = t[off];
        if (type == 0) { /* processor, 20 bytes */
            if (off + 20 > len)
                break;
            if (t[off + 3] & 1) /* EN */
                add_cpu(t[off + 1]);
            off += 20;
        } else if (type <= 4) { /* bus, I/O APIC, I/O interrupt, local interrupt: 8 bytes */
            off += 8;
        } else {
            break; /* unknown entry type: stop */
        }
    }
}
