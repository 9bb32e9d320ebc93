# A lab host with shared defaults, VMs in different states, a retired VM and a direct-kernel VM.
#   kvmps plan examples/lab-host.psd1
#   kvmps apply examples/lab-host.psd1
#
# 'lab-linux' boots a real kernel: adjust KernelPath / InitrdPath to files on your host (relative paths are
# relative to this file's folder). The others boot the built-in guest.
@{
    Defaults        = @{
        MemoryStartupBytes = 256MB
        VcpuCount          = 1
        VcpuMaximum        = 4          # room to hot-add vCPUs later
        State              = 'Running'
        RestartIfNeeded    = $true      # restart running VMs to apply vCPU/memory changes
    }

    VirtualMachines = @(
        @{ Name = 'lab-build1'; VcpuCount = 2 }
        @{ Name = 'lab-build2'; VcpuCount = 2 }

        # Kept defined but powered off; a change to it is just stored.
        @{ Name = 'lab-spare'; State = 'Off'; Notes = 'spare capacity' }

        # Created and started, then paused (all vCPUs stopped, memory kept).
        @{ Name = 'lab-frozen'; State = 'Paused' }

        # A qcow2 data disk (created by apply, virtio-blk in the guest) and a memory balloon that
        # Invoke-KvmBalloon / kvmps can move while the VM runs, between 128 MB and its 256 MB.
        @{
            Name               = 'lab-data'
            MemoryMinimumBytes = 128MB
            BalloonEnabled     = $true
            Disks              = @( @{ Path = 'data.qcow2'; Format = 'qcow2'; SizeBytes = 1GB } )
        }

        # Removed if it exists (stopped first when running). Only Name and Ensure matter here.
        @{ Name = 'lab-old'; Ensure = 'Absent' }

        @{
            Name               = 'lab-linux'
            MemoryStartupBytes = 512MB
            RestartIfNeeded    = $false    # never restart it behind its users' backs
            Boot               = @{
                KernelPath = '/boot/vmlinuz'
                InitrdPath = '/boot/initrd.img'
                Cmdline    = 'console=ttyS0 quiet'
            }
        }
    )
}
