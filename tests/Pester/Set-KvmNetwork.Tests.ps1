#Requires -Version 7.4
# Set-KvmNetwork: changes only the settings given, resets gateway and range when the subnet changes, -WhatIf,
# refusals, help. Tags as in New-KvmNetwork.Tests.ps1.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    $script:octet = Get-Random -Minimum 10 -Maximum 250
}

AfterAll {
    Complete-KvmTest
}

Describe 'Set-KvmNetwork' {
    Context 'without the host' {
        It 'refuses a bad address before looking at any network' {
            # A bad parameter concerns every network named: the command stops (a terminating error).
            { Set-KvmNetwork -Name anything -Gateway 300.1.1.1 -ErrorAction Stop } |
                Should -Throw -ErrorId 'InvalidValue,KvmPS.Commands.SetKvmNetworkCommand' -ExpectedMessage "-Gateway: '300.1.1.1' is not an IPv4 address*"
        }

        It 'has full help' {
            Assert-KvmHelp Set-KvmNetwork | Out-Null
        }
    }

    Context 'in the store' -Tag 'NetworkManager' {
        BeforeAll {
            $script:bridge = New-KvmTestNetName
            New-KvmNetwork -Name lab -BridgeName $bridge -Subnet "10.249.$octet.0/24" -Gateway "10.249.$octet.1" -DnsDomain lab.test | Out-Null
        }

        It 'changes the settings given and keeps the others' {
            $net = Set-KvmNetwork -Name lab -Autostart -Mtu 9000 -StaticLease @{ Mac = '52:54:00:aa:00:01'; Address = "10.249.$octet.10" } -PassThru
            $net.Autostart | Should -BeTrue
            $net.Mtu | Should -Be 9000
            "$($net.StaticLeases[0].Address)" | Should -Be "10.249.$octet.10"
            $net.DnsDomain | Should -Be 'lab.test'
            $net.BridgeName | Should -Be $bridge
            (Get-KvmNetwork lab).Mtu | Should -Be 9000
        }

        It '-WhatIf lists the changes and changes nothing' {
            $lines = Get-KvmWhatIfLine { Set-KvmNetwork lab -Subnet "10.245.$octet.0/24" -WhatIf }
            $lines | Should -Match "Subnet 10\.249\.$octet\.0/24 -> 10\.245\.$octet\.0/24"
            $lines | Should -Match "Gateway 10\.249\.$octet\.1 -> \(default\)"
            (Get-KvmNetwork lab).Subnet | Should -Be "10.249.$octet.0/24"
        }

        It 'a new subnet takes the gateway back to its default, and the leases of the old subnet are refused' {
            Set-KvmNetwork lab -Subnet "10.245.$octet.0/24" -ErrorVariable err -ErrorAction SilentlyContinue
            # The lease 10.249.x.10 is outside the new subnet: refused, nothing changed.
            Assert-KvmError $err -ErrorId InvalidNetworkSetting -Command Set-KvmNetwork -Category InvalidArgument -NoTarget
            (Get-KvmNetwork lab).Subnet | Should -Be "10.249.$octet.0/24"
            $net = Set-KvmNetwork lab -Subnet "10.245.$octet.0/24" -StaticLease @() -PassThru
            $net.Subnet | Should -Be "10.245.$octet.0/24"
            $net.StaticLeases | Should -BeNullOrEmpty
            "$($net.Gateway)" | Should -Not -Be "10.249.$octet.1"
        }

        It 'with nothing to change, changes nothing and says so' {
            $verbose = Set-KvmNetwork lab -Mtu 9000 -Verbose 4>&1
            "$verbose" | Should -Match 'already has these settings'
        }

        It 'reports a missing network as NetworkNotFound' {
            Set-KvmNetwork -Name missing -Mtu 1500 -ErrorVariable err -ErrorAction SilentlyContinue
            Assert-KvmError $err -ErrorId NetworkNotFound -Command Set-KvmNetwork -Category ObjectNotFound -TargetObject 'missing'
        }

        It 'binds only the name of a piped network' {
            (Get-KvmNetwork lab | Set-KvmNetwork -DnsDomain '' -PassThru).DnsDomain | Should -BeNullOrEmpty
        }
    }
}
