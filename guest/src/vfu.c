/* Driver for the vfio-user test device (tests/KvmPS.VfioUserTestDevice/README.md has its register map): finds it on
   PCI, enables memory decode and bus mastering, routes its four MSI-X vectors to VEC_VFU, runs DMA round trips through
   BAR0's registers, checks the mmap-able BAR2 against the device's own checksum, and moves BARs. Every command re-reads
   the BAR registers, so a moved BAR is used where it now is. `vfu test N intx` uses the device's INTx instead (a
   server started with --intx): MSI-X off, the pin's GSI (the interrupt line register) routed level-triggered through
   the IOAPIC to VEC_VFU_INTX, whose handler acknowledges the device before the EOI. `vfu test N msi` uses its MSI
   capability: MSI-X off, up to four multiple messages at VEC_VFU_MSI..+3 (vector n arrives as data | n), and checks
   that each completion arrives on the vector it asked for. Each mode turns the other two off. */
#include "vfu.h"
#include "acpi.h"
#include "apic.h"
#include "idt.h"
#include "io.h"
#include "layout.h"
#include "lib.h"
#include "pci.h"
#include "timer.h"

#define VFU_VENDOR 0x1b36
#define VFU_DEVICE 0x7f5e
#define VFU_MAGIC 0x30554656u
#define VFU_VECTORS 4

#define R_MAGIC 0x00
#define R_VERSION 0x04
#define R_DMA_ADDR_LO 0x08
#define R_DMA_ADDR_HI 0x0c
#define R_DMA_LEN 0x10
#define R_DMA_OP 0x14
#define R_DMA_KEY 0x18
#define R_DOORBELL 0x1c
#define R_STATUS 0x20
#define R_CHECKSUM 0x24
#define R_COMPLETED 0x28
#define R_IRQ_VECTOR 0x2c
#define R_ERROR 0x30
#define R_SCRATCH 0x34
#define R_IRQ_COUNT 0x38
#define R_RESET_COUNT 0x3c
#define R_BAR2_SUM_LEN 0x40
#define R_BAR2_SUM 0x44
#define R_IRQ_ACK 0x48

#define PCI_INTERRUPT_LINE 0x3c
#define PCI_INTERRUPT_PIN 0x3d
#define PCI_CMD_INTX_DISABLE 0x400

#define OP_XOR 1
#define OP_REVERSE 2
#define OP_REVERSE_XOR 3
#define BAR2_CHECK_BYTES 4096u
#define DMA_BUF_BYTES 4096u

#define PCI_CAP_MSIX 0x11
#define PCI_CAP_MSI 0x05
#define MSI_ENABLE 0x0001
#define MSI_64BIT 0x0080
#define MSI_MASKING 0x0100

enum vfu_mode { MODE_MSIX, MODE_INTX, MODE_MSI };
#define MSIX_ENABLE 0x8000
#define MSIX_FUNCTION_MASK 0x4000

struct vfu {
    struct pci_dev pci;
    u64 bar0, bar2, bar4;
};

static volatile u32 vfu_irqs;
static volatile u8 vfu_last_vector; /* the vector the last interrupt came on */
static u32 msi_vectors;              /* MSI messages enabled by `msi` mode */
static u8 dma_buf[DMA_BUF_BYTES] __attribute__((aligned(4096)));
static u8 expect_buf[DMA_BUF_BYTES];
static u32 bar_seed;

static u64 intx_bar0; /* BAR0 of the device whose INTx is routed: the handler acknowledges there */

static void vfu_irq(u8 vector)
{
    vfu_last_vector = vector;
    vfu_irqs++;
}

/* Level-triggered: the device keeps the line up until it is acknowledged, so acknowledge before the EOI (which KVM
   turns into "unmask INTx" for the device). */
static void vfu_intx_irq(u8 vector)
{
    (void)vector;
    vfu_irqs++;
    if (intx_bar0) {
        mmio_write32(intx_bar0 + R_IRQ_ACK, 1);
        /* Read back before the EOI, as drivers flush a posted write: the device must have lowered its line when the
           EOI unmasks it, or it fires again (a spurious interrupt). */
        (void)mmio_read32(intx_bar0 + R_STATUS);
    }
}

static u32 fnv1a(const u8 *p, u32 n)
{
    u32 h = 2166136261u;
    for (u32 i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

static u32 rd(const struct vfu *v, u32 reg) { return mmio_read32(v->bar0 + reg); }
static void wr(const struct vfu *v, u32 reg, u32 val) { mmio_write32(v->bar0 + reg, val); }

/* Parses hex digits (an optional 0x first) spanning the whole string. Returns 0 on success. */
static int parse_hex(const char *s, u64 *out)
{
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
        s += 2;
    if (!*s)
        return -1;
    u64 v = 0;
    for (; *s; s++) {
        int d = *s >= '0' && *s <= '9' ? *s - '0' : *s >= 'a' && *s <= 'f' ? *s - 'a' + 10
              : *s >= 'A' && *s <= 'F' ? *s - 'A' + 10 : -1;
        if (d < 0 || v >> 60)
            return -1;
        v = v << 4 | (u64)d;
    }
    *out = v;
    return 0;
}

/* INTx instead of MSI-X: MSI-X off, INTx allowed in the command register, the pin's GSI routed to VEC_VFU_INTX. */
static int vfu_use_intx(struct vfu *v, u8 msix_cap)
{
    u8 pin = pci_read8(&v->pci, PCI_INTERRUPT_PIN), gsi = pci_read8(&v->pci, PCI_INTERRUPT_LINE);
    if (!pin || pin > 4) {
        kprintf("vfu: no INTx pin\n");
        return -1;
    }
    if (msix_cap)
        pci_write16(&v->pci, msix_cap + 2, pci_read16(&v->pci, msix_cap + 2) & ~MSIX_ENABLE);
    pci_write16(&v->pci, PCI_COMMAND, pci_read16(&v->pci, PCI_COMMAND) & ~PCI_CMD_INTX_DISABLE);
    u64 ioapic = acpi.have_ioapic ? acpi.ioapic_addr : 0xfec00000;
    u32 gsi_base = acpi.have_ioapic ? acpi.ioapic_gsi_base : 0;
    intx_bar0 = v->bar0;
    irq_register(VEC_VFU_INTX, vfu_intx_irq);
    if (ioapic_route(ioapic, gsi_base, gsi, VEC_VFU_INTX, 0x000f /* level, active low: PCI INTx */, lapic_id()) != 0) {
        kprintf("vfu: no IOAPIC pin for GSI %u\n", gsi);
        return -1;
    }
    kprintf("vfu: intx pin %c gsi %u\n", 'A' + pin - 1, gsi);
    return 0;
}

/* MSI instead of MSI-X: MSI-X off, the MSI capability programmed while off (address of this CPU, data VEC_VFU_MSI,
   nothing masked) and enabled with as many messages as it can up to four; INTx disabled in the command register. */
static int vfu_use_msi(struct vfu *v, u8 msix_cap, u8 cap)
{
    if (!cap) {
        kprintf("vfu: no MSI capability\n");
        return -1;
    }
    if (msix_cap)
        pci_write16(&v->pci, msix_cap + 2, pci_read16(&v->pci, msix_cap + 2) & ~MSIX_ENABLE);
    u16 control = pci_read16(&v->pci, cap + 2);
    pci_write16(&v->pci, cap + 2, control & ~MSI_ENABLE);
    u32 log2 = (control >> 1) & 7;
    if (log2 > 2)
        log2 = 2;
    u8 data_at = control & MSI_64BIT ? 12 : 8;
    pci_write32(&v->pci, cap + 4, 0xfee00000u | (lapic_id() << 12)); /* fixed delivery, physical destination */
    if (control & MSI_64BIT)
        pci_write32(&v->pci, cap + 8, 0);
    pci_write16(&v->pci, cap + data_at, VEC_VFU_MSI);
    if (control & MSI_MASKING)
        pci_write32(&v->pci, cap + data_at + 4, 0);
    msi_vectors = 1u << log2;
    for (u32 i = 0; i < msi_vectors; i++)
        irq_register((u8)(VEC_VFU_MSI + i), vfu_irq);
    pci_write16(&v->pci, cap + 2, (u16)((control & ~0x70u) | log2 << 4 | MSI_ENABLE));
    pci_write16(&v->pci, PCI_COMMAND, pci_read16(&v->pci, PCI_COMMAND) | PCI_CMD_INTX_DISABLE);
    u16 now = pci_read16(&v->pci, cap + 2);
    kprintf("vfu: msi vectors=%u%s%s enabled=%u\n", msi_vectors, control & MSI_64BIT ? " 64-bit" : "",
            control & MSI_MASKING ? " maskable" : "", now & MSI_ENABLE);
    return 0;
}

/* Finds the device, turns on decode and mastering, points all MSI-X vectors at VEC_VFU on this CPU (or, `intx`, routes
   its INTx instead; or, `msi`, uses its MSI capability). */
static int vfu_open_mode(struct vfu *v, enum vfu_mode mode)
{
    if (pci_find(VFU_VENDOR, VFU_DEVICE, &v->pci)) {
        kprintf("vfu: no device %04x:%04x\n", VFU_VENDOR, VFU_DEVICE);
        return -1;
    }
    v->bar0 = pci_bar_address(&v->pci, 0);
    v->bar2 = pci_bar_address(&v->pci, 2);
    v->bar4 = pci_bar_address(&v->pci, 4);
    if (!v->bar0 || !v->bar2) {
        kprintf("vfu: BARs not assigned (bar0=0x%lx bar2=0x%lx)\n", v->bar0, v->bar2);
        return -1;
    }
    pci_write16(&v->pci, PCI_COMMAND, pci_read16(&v->pci, PCI_COMMAND) | PCI_CMD_MEMORY | PCI_CMD_MASTER);
    /* First make sure the device answers at all: a dead one (its server gone) reads as all-ones. */
    u32 magic = rd(v, R_MAGIC);
    if (magic != VFU_MAGIC) {
        kprintf("vfu: device failed: magic=0x%08x\n", magic);
        return -1;
    }
    u8 cap = pci_find_cap(&v->pci, PCI_CAP_MSIX, 0), msi = pci_find_cap(&v->pci, PCI_CAP_MSI, 0);
    if (mode == MODE_MSI)
        return vfu_use_msi(v, cap, msi);
    if (msi) /* one interrupt mechanism at a time: MSI off for MSI-X and INTx */
        pci_write16(&v->pci, msi + 2, pci_read16(&v->pci, msi + 2) & ~MSI_ENABLE);
    if (mode == MODE_INTX)
        return vfu_use_intx(v, cap);
    if (!cap) {
        kprintf("vfu: no MSI-X capability\n");
        return -1;
    }
    u32 table = pci_read32(&v->pci, cap + 4);
    u64 tbar = pci_bar_address(&v->pci, (int)(table & 7));
    u16 control = pci_read16(&v->pci, cap + 2);
    u32 n = (control & 0x7ffu) + 1;
    if (!tbar || n < VFU_VECTORS) {
        kprintf("vfu: MSI-X table unusable (bar 0x%lx, %u vectors)\n", tbar, n);
        return -1;
    }
    irq_register(VEC_VFU, vfu_irq);
    for (u32 i = 0; i < VFU_VECTORS; i++) {
        u64 entry = tbar + (table & ~7u) + 16 * i;
        mmio_write32(entry + 0, 0xfee00000u | (lapic_id() << 12)); /* fixed delivery, physical destination */
        mmio_write32(entry + 4, 0);
        mmio_write32(entry + 8, VEC_VFU);
        mmio_write32(entry + 12, 0); /* unmasked */
    }
    pci_write16(&v->pci, cap + 2, (u16)((control | MSIX_ENABLE) & ~MSIX_FUNCTION_MASK));
    return 0;
}

static int vfu_open(struct vfu *v) { return vfu_open_mode(v, MODE_MSIX); }

/* Waits up to 1 s, interrupts on, for a non-zero status and for the interrupt count to pass `irqs_before`. */
static u32 wait_done(const struct vfu *v, u32 irqs_before, int *got_irq)
{
    u32 status = 0;
    *got_irq = 0;
    /* Up to 5 s (each pass 100 us with interrupts open, plus a BAR read that is a round trip to the device's server):
       on a loaded host the completion's interrupt can take well over a second to arrive. */
    for (int i = 0; i < 50000; i++) {
        status = rd(v, R_STATUS);
        if (status == 0xffffffffu)
            break; /* the device is gone: no interrupt will come */
        if (status && vfu_irqs != irqs_before) {
            *got_irq = 1;
            break;
        }
        sti();
        udelay(100);
        cli();
    }
    return status;
}

static void expected(u32 op, u8 key, u32 len)
{
    for (u32 i = 0; i < len; i++)
        expect_buf[i] = op == OP_XOR ? dma_buf[i] : dma_buf[len - 1 - i];
    if (op != OP_REVERSE)
        for (u32 i = 0; i < len; i++)
            expect_buf[i] ^= key;
}

/* `vfu test N [intx|msi]`: N DMA round trips, each with its own length, operation, key and vector (or INTx). */
static void vfu_test(u64 rounds, enum vfu_mode mode)
{
    struct vfu v;
    if (vfu_open_mode(&v, mode))
        return;
    u32 ok = 0, irqs = 0, last_sum = 0, wrong_vector = 0;
    u32 vectors = mode == MODE_MSI ? msi_vectors : VFU_VECTORS;
    u32 done_before = rd(&v, R_COMPLETED);
    for (u32 r = 0; r < rounds; r++) {
        u32 len = 64 + (r * 997u) % (DMA_BUF_BYTES - 64);
        u32 op = r % 3 + 1;
        u8 key = (u8)(0x5a ^ r);
        for (u32 i = 0; i < len; i++)
            dma_buf[i] = (u8)(r * 31u + i * 7u);
        expected(op, key, len);
        u32 want = fnv1a(expect_buf, len);
        u32 irqs_before = vfu_irqs;
        wr(&v, R_STATUS, 3);
        wr(&v, R_DMA_ADDR_LO, (u32)(uptr)dma_buf);
        wr(&v, R_DMA_ADDR_HI, (u32)((u64)(uptr)dma_buf >> 32));
        wr(&v, R_DMA_LEN, len);
        wr(&v, R_DMA_OP, op);
        wr(&v, R_DMA_KEY, key);
        wr(&v, R_IRQ_VECTOR, r % vectors);
        wr(&v, R_DOORBELL, 1);
        int got_irq;
        u32 status = wait_done(&v, irqs_before, &got_irq);
        irqs += got_irq;
        if (status == 0xffffffffu || rd(&v, R_MAGIC) != VFU_MAGIC) {
            kprintf("vfu: device failed at round %u: status=0x%08x magic=0x%08x\n", r, status, rd(&v, R_MAGIC));
            kprintf("vfu: test rounds=%u ok=%u irqs=%u\n", (u32)rounds, ok, irqs);
            kprintf("vfu: FAILED\n");
            return;
        }
        u32 sum = rd(&v, R_CHECKSUM);
        int data_ok = !memcmp(dma_buf, expect_buf, len);
        /* With several MSI messages, vector n arrives as data | n: the completion must come on the one it asked for. */
        if (got_irq && mode == MODE_MSI && vfu_last_vector != VEC_VFU_MSI + r % vectors) {
            kprintf("vfu: round %u came on vector 0x%x, not 0x%x\n", r, vfu_last_vector, VEC_VFU_MSI + r % vectors);
            wrong_vector++;
            got_irq = 0;
        }
        if (status == 1 && data_ok && sum == want && got_irq) {
            ok++;
            last_sum = sum;
        } else {
            kprintf("vfu: round %u bad: status=%u error=%u data=%s checksum=0x%08x want=0x%08x irq=%d\n", r, status,
                    rd(&v, R_ERROR), data_ok ? "ok" : "wrong", sum, want, got_irq);
        }
    }
    u32 completed = rd(&v, R_COMPLETED) - done_before;
    kprintf("vfu: test rounds=%u ok=%u irqs=%u completed=%u checksum=0x%08x%s\n", (u32)rounds, ok, irqs, completed,
            last_sum, mode == MODE_INTX ? " intx" : mode == MODE_MSI ? " msi" : "");
    if (wrong_vector)
        kprintf("vfu: %u interrupts on the wrong MSI vector\n", wrong_vector);
    kprintf(ok == rounds && irqs == rounds && completed == rounds ? "vfu: ok\n" : "vfu: FAILED\n");
}

/* `vfu bar`: writes a fresh pattern into BAR2 (the mmap-able BAR) and compares the device's checksum of it. */
static void vfu_bar(void)
{
    struct vfu v;
    if (vfu_open(&v))
        return;
    bar_seed = bar_seed * 1103515245u + 12345u;
    for (u32 i = 0; i < BAR2_CHECK_BYTES; i += 4) {
        u32 word = (bar_seed ^ i) * 2654435761u;
        mmio_write32(v.bar2 + i, word);
        memcpy(expect_buf + i, &word, 4);
    }
    u32 first = mmio_read32(v.bar2), want = fnv1a(expect_buf, BAR2_CHECK_BYTES);
    wr(&v, R_BAR2_SUM_LEN, BAR2_CHECK_BYTES);
    u32 sum = rd(&v, R_BAR2_SUM);
    u32 first_want;
    memcpy(&first_want, expect_buf, 4);
    kprintf("vfu: bar2 0x%lx sum=0x%08x device=0x%08x readback=%s\n", v.bar2, want, sum,
            first == first_want ? "ok" : "wrong");
    kprintf(sum == want && first == first_want ? "vfu: ok\n" : "vfu: FAILED\n");
}

/* `vfu move BAR ADDR`: rewrites a 32-bit memory BAR with memory decode off, as an OS re-placing it would. */
static void vfu_move(char *arg)
{
    char *addr_text = arg;
    while (*addr_text && *addr_text != ' ')
        addr_text++;
    while (*addr_text == ' ')
        *addr_text++ = 0;
    u64 bar, addr;
    struct vfu v;
    if (parse_u64(arg, &bar) || (bar != 0 && bar != 2 && bar != 4) || parse_hex(addr_text, &addr) || addr >> 32) {
        kprintf("usage: vfu move 0|2|4 HEXADDR (below 4 GiB)\n");
        return;
    }
    if (vfu_open(&v))
        return;
    u8 off = (u8)(PCI_BAR0 + 4 * bar);
    u16 cmd = pci_read16(&v.pci, PCI_COMMAND);
    u32 old = pci_read32(&v.pci, off);
    pci_write16(&v.pci, PCI_COMMAND, cmd & ~PCI_CMD_MEMORY);
    pci_write32(&v.pci, off, 0xffffffffu);
    u32 size = ~(pci_read32(&v.pci, off) & ~0xfu) + 1;
    if (addr & (size - 1)) {
        pci_write32(&v.pci, off, old);
        pci_write16(&v.pci, PCI_COMMAND, cmd);
        kprintf("vfu: 0x%lx is not aligned to bar%lu's size 0x%x\n", addr, bar, size);
        return;
    }
    pci_write32(&v.pci, off, (u32)addr | (old & 0xf));
    pci_write16(&v.pci, PCI_COMMAND, cmd);
    kprintf("vfu: bar%lu moved 0x%x -> 0x%x\n", bar, old & ~0xfu, pci_read32(&v.pci, off) & ~0xfu);
}

/* `vfu msixbad`: garbage in every MSI-X entry (an address outside the interrupt range, all-ones data, a reserved
   delivery mode), then one DMA round: the device must still complete it; the next `vfu test` reprograms the entries. */
static void vfu_msix_bad(void)
{
    struct vfu v;
    if (vfu_open(&v))
        return;
    u8 cap = pci_find_cap(&v.pci, PCI_CAP_MSIX, 0);
    u32 table = pci_read32(&v.pci, cap + 4);
    u64 tbar = pci_bar_address(&v.pci, (int)(table & 7));
    for (u32 i = 0; i < VFU_VECTORS; i++) {
        u64 entry = tbar + (table & ~7u) + 16 * i;
        mmio_write32(entry + 0, 0xdead0003u);
        mmio_write32(entry + 4, 0xffffffffu);
        mmio_write32(entry + 8, 0xffffffffu);
        mmio_write32(entry + 12, 0);
    }
    for (u32 i = 0; i < 64; i++)
        dma_buf[i] = (u8)i;
    u32 irqs_before = vfu_irqs;
    wr(&v, R_STATUS, 3);
    wr(&v, R_DMA_ADDR_LO, (u32)(uptr)dma_buf);
    wr(&v, R_DMA_ADDR_HI, (u32)((u64)(uptr)dma_buf >> 32));
    wr(&v, R_DMA_LEN, 64);
    wr(&v, R_DMA_OP, OP_REVERSE);
    wr(&v, R_IRQ_VECTOR, 0);
    wr(&v, R_DOORBELL, 1);
    int got_irq;
    u32 status = wait_done(&v, irqs_before, &got_irq);
    kprintf("vfu: msixbad status=%u data=%s\n", status, dma_buf[0] == 63 && dma_buf[63] == 0 ? "ok" : "wrong");
}

static void vfu_info(void)
{
    struct vfu v;
    if (vfu_open(&v))
        return;
    kprintf("vfu: %02x:%02x.%x bar0=0x%lx bar2=0x%lx bar4=0x%lx\n", v.pci.bus, v.pci.dev, v.pci.fn, v.bar0, v.bar2,
            v.bar4);
    kprintf("vfu: magic=0x%08x version=%u completed=%u irqs=%u resets=%u scratch=0x%08x guest_irqs=%u\n",
            rd(&v, R_MAGIC), rd(&v, R_VERSION), rd(&v, R_COMPLETED), rd(&v, R_IRQ_COUNT), rd(&v, R_RESET_COUNT),
            rd(&v, R_SCRATCH), vfu_irqs);
}

void cmd_vfu(char *arg)
{
    u64 n;
    if (!strcmp(arg, "info")) {
        vfu_info();
    } else if (!strncmp(arg, "test ", 5)) {
        char *mode = arg + 5;
        while (*mode && *mode != ' ')
            mode++;
        enum vfu_mode m = !strcmp(mode, " intx") ? MODE_INTX : !strcmp(mode, " msi") ? MODE_MSI : MODE_MSIX;
        if (*mode && m == MODE_MSIX)
            mode = 0;
        else
            *mode = 0;
        if (!mode || parse_u64(arg + 5, &n) || n == 0 || n > 100000)
            kprintf("usage: vfu test N [intx|msi] (1-100000)\n");
        else
            vfu_test(n, m);
    } else if (!strcmp(arg, "bar")) {
        vfu_bar();
    } else if (!strcmp(arg, "msixbad")) {
        vfu_msix_bad();
    } else if (!strncmp(arg, "move ", 5)) {
        vfu_move(arg + 5);
    } else if (!strncmp(arg, "scratch ", 8)) {
        struct vfu v;
        if (parse_hex(arg + 8, &n) || n >> 32)
            kprintf("usage: vfu scratch HEXVALUE\n");
        else if (!vfu_open(&v)) {
            wr(&v, R_SCRATCH, (u32)n);
            kprintf("vfu: scratch=0x%08x\n", rd(&v, R_SCRATCH));
        }
    } else {
        kprintf("usage: vfu info | vfu test N [intx|msi] | vfu bar | vfu msixbad | vfu move 0|2|4 HEXADDR | vfu scratch HEXVALUE\n");
    }
}
