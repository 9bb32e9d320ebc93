#Requires -Version 7.4
# Remove-KvmNetwork: ConfirmImpact High, forgets a network, refuses one a VM uses (naming the VM), -WhatIf, help.
# Tags as in New-KvmNetwork.Tests.ps1.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    $script:octet = Get-Random -Minimum 10 -Maximum 250
}

AfterAll {
    Complete-KvmTest
}

Describe 'Remove-KvmNetwork' {
    Context 'without the host' {
        It 'asks first: ConfirmImpact is High' {
            (Get-Command Remove-KvmNetwork).ImplementingType.GetCustomAttributes([System.Management.Automation.CmdletAttribute], $false)[0].ConfirmImpact | Should -Be 'High'
        }

        It 'has full help' {
            Assert-KvmHelp Remove-KvmNetwork | Out-Null
        }
    }

    Context 'in the store' -Tag 'NetworkManager' {
        It 'removes a network, and -PassThru returns it as it was' {
            New-KvmNetwork -Name gone -BridgeName (New-KvmTestNetName) -Subnet "10.249.$octet.0/24" | Out-Null
            $removed = Remove-KvmNetwork gone -Confirm:$false -PassThru
            $removed.Name | Should -Be 'gone'
            Get-KvmNetwork gone -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        }

        It '-WhatIf removes nothing' {
            New-KvmNetwork -Name kept -BridgeName (New-KvmTestNetName) -Subnet "10.244.$octet.0/24" | Out-Null
            $lines = Get-KvmWhatIfLine { Remove-KvmNetwork kept -WhatIf }
            $lines | Should -Match 'Stop and remove Nat network'
            Get-KvmNetwork kept | Should -Not -BeNullOrEmpty
        }

        It 'refuses a network a VM has an adapter on, naming the VM' {
            New-KvmNetwork -Name used -BridgeName (New-KvmTestNetName) -Subnet "10.243.$octet.0/24" | Out-Null
            New-KvmTestVm -Name netuser | Out-Null
            Add-KvmNetworkAdapter -Name netuser -Network used -Confirm:$false
            Remove-KvmNetwork used -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
            Assert-KvmError $err -ErrorId NetworkInUse -Command Remove-KvmNetwork -Category ResourceBusy -TargetObject 'used'
            "$($err[0])" | Should -Match "netuser"
            Get-KvmNetwork used | Should -Not -BeNullOrEmpty
        }

        It 'reports a missing network as NetworkNotFound' {
            Remove-KvmNetwork missing -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
            Assert-KvmError $err -ErrorId NetworkNotFound -Command Remove-KvmNetwork -Category ObjectNotFound -TargetObject 'missing'
        }
    }
}
