# A whole host in one manifest: a NAT network, a storage pool, and VMs on both (issue 15; docs/networks.md, docs/pools.md).
#   kvmps plan examples/network-host.psd1
#   kvmps apply examples/network-host.psd1     # network created and started, pool folder made, then the VMs
#   Get-KvmVmNetworkAdapter -VMName net-web1   # (or: kvmps vm addresses net-web1) the address DHCP gave it
#
# Pick a subnet and bridge name that are free on your host; change the pool's Path to a folder of yours.
@{
    Networks        = @(
        # NAT: bridge kvbr-lab with 10.77.0.1, DHCP and DNS from dnsmasq, masquerading out through nftables.
        @{
            Name         = 'lab'
            Mode         = 'Nat'
            Bridge       = 'kvbr-lab'
            Subnet       = '10.77.0.0/24'
            DhcpRange    = @('10.77.0.100', '10.77.0.200')
            # net-web1's adapter always gets 10.77.0.10 (its MAC is fixed below).
            StaticLeases = @( @{ Mac = '52:54:00:77:00:10'; Address = '10.77.0.10'; HostName = 'net-web1' } )
            DnsDomain    = 'lab.internal'
            Autostart    = $true
            Ensure       = 'Present'
        }
    )

    StoragePools    = @(
        @{ Name = 'lab'; Path = '/srv/kvmps/lab'; Autostart = $true }
    )

    Defaults        = @{ MemoryStartupBytes = 256MB; State = 'Running' }

    VirtualMachines = @(
        @{
            Name            = 'net-web1'
            # The built-in guest takes its address from the network's DHCP server, then answers pings for a while
            # (guest/README.md); a real OS image does its own DHCP.
            Boot            = @{ Cmdline = 'kvmps.run=net dhcp 60,net serve 100 600' }
            Disks           = @( @{ Pool = 'lab'; Volume = 'net-web1.qcow2'; SizeBytes = 1GB } )
            NetworkAdapters = @( @{ Network = 'lab'; MacAddress = '52:54:00:77:00:10' } )
        }
        @{
            Name            = 'net-db1'
            Boot            = @{ Cmdline = 'kvmps.run=net dhcp 60' }
            VcpuCount       = 2
            Disks           = @( @{ Pool = 'lab'; Volume = 'net-db1.qcow2'; SizeBytes = 2GB } )
            # No MAC: a stable generated one; the address comes from the DHCP range.
            NetworkAdapters = @( @{ Network = 'lab' } )
        }
    )
}
