/* Constants shared by C and assembly. */
#ifndef KVMPS_LAYOUT_H
#define KVMPS_LAYOUT_H

#define BOOT_LINUX64 1
#define BOOT_PVH 2

#define GDT_CODE64 0x08
#define GDT_DATA 0x10
#define GDT_CODE32 0x18
#define GDT_UDATA 0x20   /* ring-3 data (DPL3); selector 0x23 with RPL 3 */
#define GDT_UCODE64 0x28 /* ring-3 64-bit code (DPL3); selector 0x2b */
#define GDT_TSS 0x30     /* 64-bit TSS, 16 bytes (usermode.c fills it) */

#define BOOT_STACK_SIZE 16384
#define MAX_AP_STACKS 256          /* one per APIC ID (the AP picks its stack by its initial APIC ID) */
#define AP_STACK_SHIFT 12          /* 4 KiB per AP */

/* Real-mode AP trampoline: copied here; SIPI vector = TRAMPOLINE_BASE >> 12. */
#define TRAMPOLINE_BASE 0x3000

/* Interrupt vectors */
#define VEC_UART 0x34
#define VEC_PIT 0x35
#define VEC_SCI 0x36     /* ACPI SCI (power button, GPEs) */
#define VEC_PARK 0x37    /* IPI: an AP checks its park request */
#define VEC_VMEM 0x38    /* MSI-X: virtio-mem configuration change (requested size) */
#define VEC_VFU 0x39     /* MSI-X: the vfio-user test device (vfu.c), all four vectors */
#define VEC_VFU_INTX 0x3a /* INTx of the vfio-user test device (vfu.c), through the IOAPIC */
#define VEC_VFU_MSI 0x3c  /* MSI of the vfio-user test device (vfu.c): 0x3c-0x3f, aligned for 4 multiple messages */

#endif
