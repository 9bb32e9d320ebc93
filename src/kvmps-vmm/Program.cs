// kvmps-vmm: one KVM virtual machine per process. All behaviour lives in KvmPS.Vmm.VmmHost (docs/vmm.md).
return KvmPS.Vmm.VmmHost.Main(args);
