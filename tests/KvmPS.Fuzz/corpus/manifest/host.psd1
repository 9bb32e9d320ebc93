# The KvmPS main job: this host runs three small VMs on the built-in default guest.
#
#   kvmps apply examples/host.psd1      # create and start them (again: nothing to do)
#   kvmps vm list                       # see them running
#   kvmps test examples/host.psd1       # exit 0 while the host matches
#
# No Boot key: every VM boots kvmps-vmm's built-in guest. Disks, NetworkAdapters and BalloonEnabled work too
# (see lab-host.psd1); they are left out here so the example runs on any host, without taps or images.
# Schema: docs/en-US/about_KvmPS_Manifests.md.
@{
    # Merged under every VM below; a VM's own key replaces the default.
    Defaults        = @{
        MemoryStartupBytes = 128MB
        VcpuCount          = 1
        State              = 'Running'
    }

    VirtualMachines = @(
        @{
            Name      = 'demo-web'
            VcpuCount = 2
            Notes     = 'front end'
        }
        @{
            Name               = 'demo-db'
            MemoryStartupBytes = 256MB
            Notes              = 'database'
        }
        @{
            Name      = 'demo-cache'
            Autostart = $true
            Notes     = 'cache; started again by kvmps autostart after a host reboot'
        }
    )
}
