#Requires -Version 7.4
# Get-KvmVmNetworkAdapter: one object per adapter with its network, MAC and leased addresses; VmNotFound; the view;
# help. Tags as in New-KvmNetwork.Tests.ps1.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    $script:octet = Get-Random -Minimum 10 -Maximum 250
}

AfterAll {
    Complete-KvmTest
}

Describe 'Get-KvmVmNetworkAdapter' {
    Context 'without the host' {
        It 'reports a VM that does not exist as VmNotFound' {
            Get-KvmVmNetworkAdapter -VMName nosuchvm -ErrorVariable err -ErrorAction SilentlyContinue
            Assert-KvmError $err -ErrorId VmNotFound -Command Get-KvmVmNetworkAdapter -Category ObjectNotFound -TargetObject 'nosuchvm'
        }

        It 'shows adapters in a table within 80 columns, like Get-VMNetworkAdapter' {
            $mac = [KvmPS.Management.Definitions.MacAddress]::Parse('52:54:00:aa:00:01')
            $addresses = [System.Net.IPAddress[]]@([System.Net.IPAddress]::Parse('10.249.1.57'))
            $row = [KvmPS.Management.Networks.VmNetworkAdapterAddresses]::new('a-vm-name-long', 0, $mac, 'lab-network', 'kvbr-lab', $null, $addresses)
            $bridged = [KvmPS.Management.Networks.VmNetworkAdapterAddresses]::new('a-vm-name-long', 1, $mac, $null, 'br0', $null, [System.Net.IPAddress[]]@())
            $lines = Assert-KvmView -InputObject @($row, $bridged) -View Table
            $lines[0] | Should -Match '^VMName\s+#\s+MacAddress\s+Network\s+IPAddresses'
            $lines[2] | Should -Match '52:54:00:aa:00:01\s+lab-network\s+10\.249\.1\.57'
            $lines[3] | Should -Match 'bridge:br0'
        }

        It 'has full help' {
            Assert-KvmHelp Get-KvmVmNetworkAdapter | Out-Null
        }
    }

    Context 'in the store' -Tag 'NetworkManager' {
        It 'lists each adapter with its network and MAC; no lease yet means no address' {
            New-KvmNetwork -Name lab -BridgeName (New-KvmTestNetName) -Subnet "10.249.$octet.0/24" | Out-Null
            New-KvmTestVm -Name web1 | Out-Null
            Add-KvmNetworkAdapter -Name web1 -Network lab -MacAddress 52:54:00:aa:00:01 -Confirm:$false
            Add-KvmNetworkAdapter -Name web1 -BridgeName br-none -Confirm:$false
            $adapters = @(Get-KvmVmNetworkAdapter -VMName web1)
            $adapters.Count | Should -Be 2
            $adapters[0].Network | Should -Be 'lab'
            "$($adapters[0].MacAddress)" | Should -Be '52:54:00:aa:00:01'
            $adapters[0].IPAddresses | Should -BeNullOrEmpty
            $adapters[1].BridgeName | Should -Be 'br-none'
            $adapters[1].Network | Should -BeNullOrEmpty
        }

        It 'takes VMs from the pipeline' {
            @(Get-KvmVm web1 | Get-KvmVmNetworkAdapter).Count | Should -Be 2
        }
    }
}
