/* PCI configuration access (mechanism #1, ports 0xCF8/0xCFC), bus-0 enumeration, BARs and capabilities. */
#ifndef KVMPS_PCI_H
#define KVMPS_PCI_H

#include "types.h"

#define PCI_VENDOR 0x00
#define PCI_COMMAND 0x04
#define PCI_STATUS 0x06
#define PCI_CLASS_REV 0x08
#define PCI_HEADER_TYPE 0x0e
#define PCI_BAR0 0x10
#define PCI_CAP_PTR 0x34
#define PCI_CMD_MEMORY 0x2
#define PCI_CMD_MASTER 0x4
#define PCI_STATUS_CAPS 0x10

struct pci_dev {
    u8 bus, dev, fn;
    u16 vendor, device;
    u32 class_code; /* base << 16 | sub << 8 | prog-if */
};

u8 pci_read8(const struct pci_dev *d, u8 off);
u16 pci_read16(const struct pci_dev *d, u8 off);
u32 pci_read32(const struct pci_dev *d, u8 off);
void pci_write16(const struct pci_dev *d, u8 off, u16 v);
void pci_write32(const struct pci_dev *d, u8 off, u32 v);

/* Prints one "pci: BB:DD.F vvvv:dddd class cccccc" line per function on bus 0. */
void pci_list(void);
/* Finds the first function on bus 0 with these IDs. Returns 0 on success. */
int pci_find(u16 vendor, u16 device, struct pci_dev *out);
/* Memory address of BAR n (64-bit BARs combined). If the BAR is unassigned (0), sizes it and assigns it
   from a small guest-side window at 0xd0000000 (KvmPS pre-assigns BARs, so this is for other VMMs). */
u64 pci_bar_address(const struct pci_dev *d, int bar);
/* Offset of the next capability with this ID after `after` (0 = from the start); 0 if none. */
u8 pci_find_cap(const struct pci_dev *d, u8 id, u8 after);

#endif
