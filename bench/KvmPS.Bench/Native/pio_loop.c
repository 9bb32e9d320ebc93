/* The physical limit for port-I/O exits on this host: a bare KVM_RUN loop around a 64-bit guest that
 * executes N `out` instructions (long mode like the built-in guest's `pio` loop, so both run the same kind of
 * code). Built and run by the benchmark (figure 4). Prints ns per exit. */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    uint32_t n = argc > 1 ? (uint32_t)strtoul(argv[1], 0, 10) : 100000;
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) { perror("/dev/kvm"); return 1; }
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) { perror("KVM_CREATE_VM"); return 1; }
    size_t mem_size = 0x200000;
    uint8_t *mem = mmap(0, mem_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    /* mov ecx, n; 1: out 0x80, al; dec ecx; jnz 1b; hlt */
    uint8_t code[] = { 0xb9, n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, n >> 24, 0xe6, 0x80, 0xff, 0xc9, 0x75, 0xfa, 0xf4 };
    memcpy(mem + 0x1000, code, sizeof code);
    /* identity map of the first 2 MiB: PML4 at 0x2000 -> PDPT 0x3000 -> PD 0x4000 with one 2 MiB page */
    uint64_t *pml4 = (uint64_t *)(mem + 0x2000), *pdpt = (uint64_t *)(mem + 0x3000), *pd = (uint64_t *)(mem + 0x4000);
    pml4[0] = 0x3000 | 3; pdpt[0] = 0x4000 | 3; pd[0] = 0x83;
    struct kvm_userspace_memory_region region = { .slot = 0, .guest_phys_addr = 0, .memory_size = mem_size, .userspace_addr = (uint64_t)mem };
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) { perror("KVM_SET_USER_MEMORY_REGION"); return 1; }
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    struct kvm_run *run = mmap(0, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    struct kvm_sregs sregs;
    ioctl(vcpu, KVM_GET_SREGS, &sregs);
    struct kvm_segment code_seg = { .base = 0, .limit = 0xffffffff, .selector = 0x8, .type = 11, .present = 1, .s = 1, .l = 1, .g = 1 };
    struct kvm_segment data_seg = { .base = 0, .limit = 0xffffffff, .selector = 0x10, .type = 3, .present = 1, .s = 1, .db = 1, .g = 1 };
    sregs.cs = code_seg;
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data_seg;
    sregs.cr3 = 0x2000;
    sregs.cr4 = 0x20;                 /* PAE */
    sregs.cr0 = 0x80000011;           /* PG | ET | PE */
    sregs.efer = 0x500;               /* LMA | LME */
    if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) { perror("KVM_SET_SREGS"); return 1; }
    struct kvm_regs regs = { .rip = 0x1000, .rflags = 2 };
    ioctl(vcpu, KVM_SET_REGS, &regs);

    uint64_t exits = 0, start = now_ns();
    for (;;) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0) { perror("KVM_RUN"); return 1; }
        if (run->exit_reason == KVM_EXIT_IO) { exits++; continue; }
        if (run->exit_reason == KVM_EXIT_HLT) break;
        fprintf(stderr, "unexpected exit %u\n", run->exit_reason);
        return 1;
    }
    uint64_t elapsed = now_ns() - start;
    printf("exits %llu ns %llu ns_per_exit %.1f\n", (unsigned long long)exits, (unsigned long long)elapsed, (double)elapsed / (exits ? exits : 1));
    return 0;
}
