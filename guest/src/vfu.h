/* Driver for the vfio-user test device (tests/KvmPS.VfioUserTestDevice, PCI 1b36:7f5e) and the `vfu` command. */
#ifndef KVMPS_VFU_H
#define KVMPS_VFU_H

/* `vfu info | test N | bar | move BAR HEXADDR | scratch HEXVALUE` (guest/README.md). */
void cmd_vfu(char *arg);

#endif
