/* PCI configuration mechanism #1 and bus-0 enumeration. */
#include "pci.h"
#include "io.h"
#include "lib.h"

#define CFG_ADDR 0xcf8
#define CFG_DATA 0xcfc

static void cfg_select(u8 bus, u8 dev, u8 fn, u8 off)
{
    outl(CFG_ADDR, 0x80000000u | (u32)bus << 16 | (u32)dev << 11 | (u32)fn << 8 | (off & 0xfc));
}

static u32 cfg_read32(u8 bus, u8 dev, u8 fn, u8 off) { cfg_select(bus, dev, fn, off); return inl(CFG_DATA); }

u8 pci_read8(const struct pci_dev *d, u8 off) { cfg_select(d->bus, d->dev, d->fn, off); return inb(CFG_DATA + (off & 3)); }
u16 pci_read16(const struct pci_dev *d, u8 off) { cfg_select(d->bus, d->dev, d->fn, off); return inw(CFG_DATA + (off & 2)); }
u32 pci_read32(const struct pci_dev *d, u8 off) { return cfg_read32(d->bus, d->dev, d->fn, off); }
void pci_write16(const struct pci_dev *d, u8 off, u16 v) { cfg_select(d->bus, d->dev, d->fn, off); outw(CFG_DATA + (off & 2), v); }
void pci_write32(const struct pci_dev *d, u8 off, u32 v) { cfg_select(d->bus, d->dev, d->fn, off); outl(CFG_DATA, v); }

/* Calls fn for each present function on bus 0; stops when fn returns non-zero. */
static int pci_scan(int (*fn)(const struct pci_dev *, void *), void *arg)
{
    for (u8 dev = 0; dev < 32; dev++) {
        for (u8 f = 0; f < 8; f++) {
            u32 id = cfg_read32(0, dev, f, PCI_VENDOR);
            if ((id & 0xffff) == 0xffff) {
                if (f == 0)
                    break;
                continue;
            }
            struct pci_dev d = { 0, dev, f, (u16)id, (u16)(id >> 16), cfg_read32(0, dev, f, PCI_CLASS_REV) >> 8 };
            if (fn(&d, arg))
                return 1;
            if (f == 0 && !(cfg_read32(0, dev, 0, 0x0c) & 0x00800000)) /* header type bit 7: multi-function */
                break;
        }
    }
    return 0;
}

static int print_one(const struct pci_dev *d, void *arg)
{
    (void)arg;
    kprintf("pci: %02x:%02x.%x %04x:%04x class %06x\n", d->bus, d->dev, d->fn, d->vendor, d->device, d->class_code);
    return 0;
}

void pci_list(void) { pci_scan(print_one, NULL); }

struct find_arg { u16 vendor, device; struct pci_dev *out; };

static int match_one(const struct pci_dev *d, void *arg)
{
    struct find_arg *a = arg;
    if (d->vendor != a->vendor || d->device != a->device)
        return 0;
    *a->out = *d;
    return 1;
}

int pci_find(u16 vendor, u16 device, struct pci_dev *out)
{
    struct find_arg a = { vendor, device, out };
    return pci_scan(match_one, &a) ? 0 : -1;
}

static u64 next_bar_addr = 0xd0000000ULL; /* top half of KvmPS's 32-bit window: only used if a BAR is unassigned */

u64 pci_bar_address(const struct pci_dev *d, int bar)
{
    u8 off = PCI_BAR0 + 4 * bar;
    u32 lo = pci_read32(d, off);
    if (lo & 1)
        return 0; /* I/O BAR: not used here */
    int is64 = ((lo >> 1) & 3) == 2;
    u64 addr = (lo & ~0xfULL) | (is64 ? (u64)pci_read32(d, off + 4) << 32 : 0);
    if (addr)
        return addr;
    /* Unassigned: size it with memory decode off, then place it (naturally aligned) in the 32-bit window. */
    u16 cmd = pci_read16(d, PCI_COMMAND);
    pci_write16(d, PCI_COMMAND, cmd & ~PCI_CMD_MEMORY);
    pci_write32(d, off, 0xffffffffu);
    u32 mask = pci_read32(d, off) & ~0xfu;
    u64 size = (u64)(~mask) + 1;
    if (!mask)
        return 0;
    addr = (next_bar_addr + size - 1) & ~(size - 1);
    next_bar_addr = addr + size;
    pci_write32(d, off, (u32)addr | (lo & 0xf));
    if (is64)
        pci_write32(d, off + 4, 0);
    pci_write16(d, PCI_COMMAND, cmd);
    return addr;
}

u8 pci_find_cap(const struct pci_dev *d, u8 id, u8 after)
{
    if (!(pci_read16(d, PCI_STATUS) & PCI_STATUS_CAPS))
        return 0;
    u8 p = after ? pci_read8(d, after + 1) : pci_read8(d, PCI_CAP_PTR);
    for (int guard = 0; p >= 0x40 && guard < 48; guard++) {
        p &= 0xfc;
        if (pci_read8(d, p) == id)
            return p;
        p = pci_read8(d, p + 1);
    }
    return 0;
}
