/* ACPI table discovery: RSDP -> XSDT/RSDT -> MADT, FADT, DSDT(\_S5). */
#ifndef KVMPS_ACPI_H
#define KVMPS_ACPI_H

#include "types.h"

#define ACPI_MAX_CPUS 256
#define ACPI_MAX_ISO 16

/* Generic Address Structure, decoded. */
struct acpi_gas {
    u8 space; /* 0 = system memory, 1 = system I/O */
    u8 width;
    u64 addr;
};

struct acpi_iso {
    u8 irq;    /* ISA IRQ */
    u32 gsi;
    u16 flags; /* MPS INTI flags: bits 0-1 polarity, 2-3 trigger */
};

struct acpi_info {
    u64 rsdp;          /* 0 if no ACPI */
    int have_madt;
    int have_fadt;
    /* MADT */
    u64 lapic_addr;
    u32 cpus_enabled;  /* LAPIC/x2APIC entries with Enabled set */
    u32 cpus_max;      /* entries Enabled or Online Capable */
    u32 napic_ids;
    u32 apic_ids[ACPI_MAX_CPUS]; /* APIC IDs of enabled entries */
    u32 nuids;         /* entries Enabled or Online Capable, in MADT order: */
    u32 uid_apic[ACPI_MAX_CPUS]; /* processor UID -> APIC ID (0xffffffff: none) */
    int have_ioapic;
    u64 ioapic_addr;   /* first IOAPIC */
    u32 ioapic_gsi_base;
    u32 niso;
    struct acpi_iso iso[ACPI_MAX_ISO];
    /* FADT */
    u32 fadt_flags;
    u16 pm1a_cnt;      /* I/O port, 0 if none */
    u16 pm_tmr;        /* I/O port, 0 if none */
    u16 pm1a_evt;      /* PM1a event block (status, then enable): I/O port, 0 if none */
    u16 gpe0_blk;      /* GPE0 block (status bytes, then enable bytes): I/O port, 0 if none */
    u8 gpe0_len;       /* GPE0 block length in bytes */
    u16 sci_int;       /* SCI interrupt (ISA IRQ) */
    u16 smi_cmd;       /* SMI command port (0: ACPI mode is always on) */
    u8 acpi_enable;    /* value for SMI_CMD that turns ACPI mode on */
    u64 dsdt;          /* DSDT address, 0 if none */
    int pm_tmr_32bit;
    struct acpi_gas sleep_ctl;   /* HW-reduced sleep control register (addr 0 if none) */
    struct acpi_gas reset_reg;   /* valid if FADT flag RESET_REG_SUP */
    u8 reset_value;
    /* DSDT */
    int have_s5;
    u8 s5_typ;         /* SLP_TYPa for S5 */
};

#define FADT_F_TMR_VAL_EXT (1u << 8)
#define FADT_F_RESET_REG_SUP (1u << 10)
#define FADT_F_HW_REDUCED (1u << 20)

extern struct acpi_info acpi;

void acpi_init(u64 rsdp_hint);
/* GSI + MPS flags for an ISA IRQ (identity unless overridden by an ISO). */
void acpi_isa_irq(u8 irq, u32 *gsi, u16 *flags);
void acpi_gas_write8(const struct acpi_gas *g, u8 v);
/* The I/O port range of the DSDT's SystemIO OperationRegion NAME (a 4-character NameSeg); -1 if there is none. */
int acpi_dsdt_io_region(const char *name, u16 *port, u16 *length);
/* The GPE number of the DSDT's edge-GPE method _Exx whose body names METHOD (4 characters); -1 if there is none. */
int acpi_dsdt_gpe_calling(const char *method);
/* Try to power off via ACPI S5; returns only on failure. */
void acpi_poweroff(void);

#endif
