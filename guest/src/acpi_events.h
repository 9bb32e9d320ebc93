/* ACPI events on the SCI: the fixed power button and the CPU hot-plug GPE (docs/acpi.md). */
#ifndef KVMPS_ACPI_EVENTS_H
#define KVMPS_ACPI_EVENTS_H

#include "types.h"

/* Routes the SCI, enables the power-button event and, when the DSDT has the KvmPS CPU hot-plug controller, its GPE. */
void acpi_events_init(void);
/* Prints "cpus: present=P online=O ids=A,B,..." (present: the hot-plug controller's view, else the MADT's). */
void acpi_print_cpus(void);
/* Prints "pcihp: gpe=G slots=BITMAP devices=SS:vvvv:dddd,..." (or "pcihp: none" without the PCI hot-plug controller). */
void acpi_print_pci_hotplug(void);

#endif
