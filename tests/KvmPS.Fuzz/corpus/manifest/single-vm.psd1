# One VM per file: the top level is the VM entry itself (no Defaults / VirtualMachines).
#   kvmps apply examples/single-vm.psd1
@{
    Name               = 'single'
    Ensure             = 'Present'
    State              = 'Running'
    MemoryStartupBytes = 256MB
    VcpuCount          = 2
    VcpuMaximum        = 4
    Notes              = 'a single VM on the built-in guest'
}
