/*
 * "fb": drives the Bochs display (PCI 1234:1111, class 0x0380) the way a guest driver does (Linux's bochs.c): memory
 * decoding on, DISPI registers through BAR 2 at 0x500 + index * 2 (16-bit), the framebuffer in BAR 0.
 *   fb mode        sets 1024x768x32 and prints "fb: 1024x768x32 at 0xADDR stride N"
 *   fb fill        (sets the mode if needed) draws a fixed picture once: the "idle screen"
 *   fb anim [FPS]  on top of the picture, moves a 128x128 box FPS times a second (default 30) until 'q' arrives:
 *                  the "changing screen". Prints "fb: anim at N fps" first and "fb: stopped after N frames" at the end.
 * Each row of a rectangle is one `rep stosl`: guest kernel code may be emulated instruction by instruction (nested
 * hosts), and a string instruction is one of them however long.
 */
#include "display.h"
#include "console.h"
#include "io.h"
#include "lib.h"
#include "pci.h"
#include "timer.h"

#define BOCHS_VENDOR 0x1234
#define BOCHS_DEVICE 0x1111
#define DISPI_OFFSET 0x500
#define DISPI_ID 0
#define DISPI_XRES 1
#define DISPI_YRES 2
#define DISPI_BPP 3
#define DISPI_ENABLE 4
#define DISPI_VIRT_WIDTH 6
#define DISPI_ENABLED 0x01
#define DISPI_LFB 0x40

#define FB_WIDTH 1024
#define FB_HEIGHT 768
#define FB_BPP 32
#define BOX 128
#define BAND_TOP 320 /* the box moves inside rows BAND_TOP .. BAND_TOP + BOX */
#define STEP 8       /* pixels the box moves per frame */

static u64 fb_base, dispi_base;
static u32 fb_stride_px;

static void dispi_write(int index, u16 v) { *(volatile u16 *)(uptr)(dispi_base + DISPI_OFFSET + index * 2) = v; }
static u16 dispi_read(int index) { return *(volatile u16 *)(uptr)(dispi_base + DISPI_OFFSET + index * 2); }

/* Finds the device and sets the mode once; returns -1 (having said why) when there is no usable display. */
static int fb_setup(void)
{
    if (fb_base)
        return 0;
    struct pci_dev d;
    if (pci_find(BOCHS_VENDOR, BOCHS_DEVICE, &d) || (d.class_code >> 8) != 0x0380) {
        kprintf("fb: no display device (PCI %04x:%04x class 0380)\n", BOCHS_VENDOR, BOCHS_DEVICE);
        return -1;
    }
    u64 fb = pci_bar_address(&d, 0), mmio = pci_bar_address(&d, 2);
    if (!fb || !mmio || fb >= (4ULL << 30) || mmio >= (4ULL << 30)) {
        kprintf("fb: BARs not usable (framebuffer 0x%lx, registers 0x%lx; below 4 GiB needed)\n", fb, mmio);
        return -1;
    }
    pci_write16(&d, PCI_COMMAND, pci_read16(&d, PCI_COMMAND) | PCI_CMD_MEMORY);
    dispi_base = mmio;
    u16 id = dispi_read(DISPI_ID);
    if ((id & 0xfff0) != 0xb0c0) {
        kprintf("fb: DISPI ID reads 0x%04x, not 0xB0Cx\n", id);
        return -1;
    }
    dispi_write(DISPI_ENABLE, 0);
    dispi_write(DISPI_BPP, FB_BPP);
    dispi_write(DISPI_XRES, FB_WIDTH);
    dispi_write(DISPI_YRES, FB_HEIGHT);
    dispi_write(DISPI_ENABLE, DISPI_ENABLED | DISPI_LFB);
    u16 x = dispi_read(DISPI_XRES), y = dispi_read(DISPI_YRES), bpp = dispi_read(DISPI_BPP);
    if (x != FB_WIDTH || y != FB_HEIGHT || bpp != FB_BPP) {
        kprintf("fb: the device took %ux%ux%u, not %ux%ux%u\n", x, y, bpp, FB_WIDTH, FB_HEIGHT, FB_BPP);
        return -1;
    }
    fb_stride_px = dispi_read(DISPI_VIRT_WIDTH);
    if (fb_stride_px < FB_WIDTH)
        fb_stride_px = FB_WIDTH;
    fb_base = fb;
    kprintf("fb: %ux%ux%u at 0x%lx stride %u\n", x, y, bpp, fb, fb_stride_px * 4);
    return 0;
}

static void fill_rect(u32 x, u32 y, u32 w, u32 h, u32 colour)
{
    for (u32 row = y; row < y + h; row++) {
        void *dst = (void *)(uptr)(fb_base + ((u64)row * fb_stride_px + x) * 4);
        u64 count = w;
        __asm__ volatile("rep stosl" : "+D"(dst), "+c"(count) : "a"(colour) : "memory");
    }
}

/* Eight vertical colour bars over the top, a grey band with the box's track, a dark bottom: fixed, so an idle
   screen stays byte for byte the same. */
static const u32 bars[8] = { 0xffffff, 0xffff00, 0x00ffff, 0x00ff00, 0xff00ff, 0xff0000, 0x0000ff, 0x000000 };
#define BAND_COLOUR 0x404040
#define BOX_COLOUR 0xff8000

static void draw_picture(void)
{
    for (int i = 0; i < 8; i++)
        fill_rect(i * (FB_WIDTH / 8), 0, FB_WIDTH / 8, BAND_TOP, bars[i]);
    fill_rect(0, BAND_TOP, FB_WIDTH, BOX, BAND_COLOUR);
    fill_rect(0, BAND_TOP + BOX, FB_WIDTH, FB_HEIGHT - BAND_TOP - BOX, 0x102030);
}

static void fb_anim(u64 fps)
{
    if (fps == 0 || fps > 1000) {
        kprintf("fb: %lu fps is not 1-1000\n", fps);
        return;
    }
    draw_picture();
    u64 period = timer_us_to_ticks(1000000 / fps), next = timer_ticks();
    u32 x = 0;
    u64 frames = 0;
    kprintf("fb: anim at %lu fps\n", fps);
    for (;;) {
        /* Move: the column the box leaves goes back to the band colour, the new part gets the box. */
        u32 nx = x + STEP + BOX > FB_WIDTH ? 0 : x + STEP;
        if (nx < x) {
            fill_rect(x, BAND_TOP, BOX, BOX, BAND_COLOUR);
            fill_rect(nx, BAND_TOP, BOX, BOX, BOX_COLOUR);
        } else {
            fill_rect(x, BAND_TOP, nx - x, BOX, BAND_COLOUR);
            fill_rect(nx, BAND_TOP, BOX, BOX, BOX_COLOUR);
        }
        x = nx;
        frames++;
        next += period;
        u64 now = timer_ticks();
        if (now > next + 4 * period)
            next = now; /* far behind (a slow host): carry on from now rather than racing to catch up */
        while (timer_ticks() < next) {
            u8 c;
            if (console_try_getc(&c) && c == 'q') {
                kprintf("fb: stopped after %lu frames\n", frames);
                return;
            }
            cpu_pause();
        }
    }
}

void cmd_fb(char *arg)
{
    u64 fps = 30;
    int anim = !strcmp(arg, "anim") || (!strncmp(arg, "anim ", 5) && !parse_u64(arg + 5, &fps));
    if (strcmp(arg, "mode") && strcmp(arg, "fill") && !anim) {
        kprintf("usage: fb mode | fb fill | fb anim [FPS]\n");
        return;
    }
    if (fb_setup())
        return;
    if (!strcmp(arg, "fill")) {
        draw_picture();
        kprintf("fb: filled\n");
    } else if (anim)
        fb_anim(fps);
}
