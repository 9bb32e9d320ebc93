// kvmps-vmm: one KVM virtual machine per process. All behaviour lives in KvmPS.Vmm.VmmHost (docs/vmm.md); the
// sandbox is on unless --sandbox off (docs/confinement.md).
return KvmPS.Vmm.VmmHost.Main(args, sandboxByDefault: true);
