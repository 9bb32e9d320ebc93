/* The Bochs display (QEMU's bochs-display, KvmPS's `--device display`): set a mode through the DISPI registers in
   BAR 2 and draw into the linear framebuffer in BAR 0, for the VNC benchmark (docs/benchmarks.md figures 11). */
#ifndef KVMPS_DISPLAY_H
#define KVMPS_DISPLAY_H

void cmd_fb(char *arg); /* "fb mode" | "fb fill" | "fb anim [FPS]" (until 'q' on the console) */

#endif
