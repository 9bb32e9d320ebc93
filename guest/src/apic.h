/* Local APIC (xAPIC MMIO, or x2APIC MSRs if firmware left it on), I/O APIC and legacy PIC. */
#ifndef KVMPS_APIC_H
#define KVMPS_APIC_H

#include "types.h"

#define LAPIC_SPURIOUS_VECTOR 0xff

#define ICR_INIT 0x00000500u
#define ICR_STARTUP 0x00000600u
#define ICR_LEVEL_ASSERT 0x00004000u
#define ICR_BUSY 0x00001000u

void pic_disable(void);           /* remap the 8259s to 0x20-0x2f and mask every line */
void lapic_init(u64 base_hint);   /* enable the BSP's local APIC */
void lapic_enable_local(void);    /* an AP: software-enable its own local APIC (same mode as the BSP's) */
u32 lapic_id(void);
void lapic_eoi(void);
int lapic_in_service(u8 vector);
/* Send an IPI (icr_low = delivery mode | vector | level) to a physical APIC ID. */
void lapic_send_ipi(u32 apic_id, u32 icr_low);

/* Route GSI to vector on the BSP. flags = MPS INTI flags (0 = bus default: ISA edge/high). */
void ioapic_mask(u64 base, u32 gsi_base, u32 gsi);
int ioapic_route(u64 ioapic_base, u32 gsi_base, u32 gsi, u8 vector, u16 flags, u32 dest_apic);

#endif
