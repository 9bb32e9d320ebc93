# A storage pool and VMs whose disks are volumes (docs/pools.md).
#   kvmps plan examples/pools-host.psd1
#   kvmps apply examples/pools-host.psd1       # creates the pool folder (0700) if missing, then the VMs and volumes
#   kvmps vol list lab
#
# Change Path to a folder on your host (a relative path is relative to this file's folder). 'default' is the
# built-in pool under the store and needs no entry.
@{
    StoragePools    = @(
        @{ Name = 'lab'; Path = '/srv/kvmps/lab'; Autostart = $true }
    )

    VirtualMachines = @(
        # A qcow2 volume in 'lab', created by apply (SizeBytes), plus a raw scratch volume in the default pool.
        @{
            Name               = 'pool-web1'
            MemoryStartupBytes = 256MB
            State              = 'Running'
            Disks              = @(
                @{ Pool = 'lab'; Volume = 'pool-web1.qcow2'; SizeBytes = 1GB }
                @{ Volume = 'pool-web1-scratch.raw'; SizeBytes = 64MB }
            )
        }
    )
}
