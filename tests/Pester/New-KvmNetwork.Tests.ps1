#Requires -Version 7.4
# New-KvmNetwork: a network defined in the store (not started: no host change), bad settings refused naming the
# parameter, -WhatIf, -Start in a test-made network namespace, the view and help.
# Tags: NetworkManager = needs the real NetworkManager (lane net-core); NetworkHost = starts networks in a namespace.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    $script:octet = Get-Random -Minimum 10 -Maximum 250
    $script:subnet = "10.249.$octet.0/24"
    $script:bridge = New-KvmTestNetName
}

AfterAll {
    Complete-KvmTest
}

Describe 'New-KvmNetwork' {
    Context 'without the host' {
        It '-WhatIf names the network, mode, bridge and subnet and defines nothing' {
            $lines = Get-KvmWhatIfLine { New-KvmNetwork -Name whatif -BridgeName $bridge -Subnet $subnet -Start -WhatIf }
            $lines | Should -Match '"whatif"'
            $lines | Should -Match "Create Nat network on bridge '$bridge' \($([regex]::Escape($subnet))\) and start it"
            Test-Path (Join-Path $env:KVMPS_HOME 'networks/whatif.network.json') | Should -BeFalse
        }

        It 'refuses an address that is not IPv4, naming the parameter, before anything is made' {
            New-KvmNetwork -Name bad -BridgeName $bridge -Subnet $subnet -Gateway 'gw.example' -ErrorVariable err -ErrorAction SilentlyContinue
            Assert-KvmError $err -ErrorId InvalidValue -Command New-KvmNetwork -Category InvalidArgument -TargetObject 'gw.example'
            "$($err[0])" | Should -Match '^-Gateway: '
        }

        It 'refuses a static lease without an address, or with an unknown key' {
            New-KvmNetwork -Name bad -BridgeName $bridge -Subnet $subnet -StaticLease @{ MacAddress = '52:54:00:00:00:01' } -ErrorVariable err -ErrorAction SilentlyContinue
            Assert-KvmError $err -ErrorId InvalidValue -Command New-KvmNetwork -Category InvalidArgument -NoTarget
            "$($err[0])" | Should -Match '-StaticLease: each lease needs MacAddress and IPAddress'
            New-KvmNetwork -Name bad -BridgeName $bridge -Subnet $subnet -StaticLease @{ Mac = '52:54:00:00:00:01'; IP = '10.0.0.1' } -ErrorVariable err2 -ErrorAction SilentlyContinue
            "$($err2[0])" | Should -Match "unknown lease key 'IP'"
            New-KvmNetwork -Name bad -BridgeName $bridge -Subnet $subnet -StaticLease @{ Mac = 'nope'; Address = "10.249.$octet.5" } -ErrorVariable err3 -ErrorAction SilentlyContinue
            "$($err3[0])" | Should -Match '-StaticLease'
        }

        It 'refuses an MTU out of range and an unknown mode (parameter validation)' {
            { New-KvmNetwork -Name bad -BridgeName $bridge -Subnet $subnet -Mtu 20 -ErrorAction Stop } | Should -Throw -ErrorId 'ParameterArgumentValidationError,KvmPS.Commands.NewKvmNetworkCommand'
            { New-KvmNetwork -Name bad -BridgeName $bridge -Mode Routed -ErrorAction Stop } | Should -Throw -ErrorId 'CannotConvertArgumentNoMessage,KvmPS.Commands.NewKvmNetworkCommand'
        }

        It 'has full help' {
            Assert-KvmHelp New-KvmNetwork | Out-Null
        }
    }

    Context 'in the store' -Tag 'NetworkManager' {
        It 'defines a Nat network, Inactive, with the settings given' {
            $net = New-KvmNetwork -Name lab -BridgeName $bridge -Subnet $subnet -DhcpRangeStart "10.249.$octet.100" -DhcpRangeEnd "10.249.$octet.199" `
                -StaticLease @{ MacAddress = '52:54:00:aa:00:01'; IPAddress = "10.249.$octet.10"; HostName = 'web1' } -DnsDomain lab.test -Autostart
            $net | Should -BeOfType ([KvmPS.PowerShell.KvmNetwork])
            $net.Name | Should -Be 'lab'
            $net.Mode | Should -Be 'Nat'
            $net.State | Should -Be 'Inactive'
            $net.BridgeName | Should -Be $bridge
            $net.Subnet | Should -Be $subnet
            "$($net.DhcpRangeStart)" | Should -Be "10.249.$octet.100"
            $net.StaticLeases[0].HostName | Should -Be 'web1'
            $net.Autostart | Should -BeTrue
            # Defined, not started: no bridge was made on this host.
            & ip link show $bridge 2>$null
            $LASTEXITCODE | Should -Not -Be 0
        }

        It 'is seen by a new session (the network is kept in the store)' {
            $child = Invoke-KvmChildPwsh '(Get-KvmNetwork lab).BridgeName'
            $child.ExitCode | Should -Be 0 -Because $child.Error
            $child.Output | Should -Contain $bridge
        }

        It 'refuses a duplicate name' {
            New-KvmNetwork -Name lab -BridgeName (New-KvmTestNetName) -Subnet '10.248.1.0/24' -ErrorVariable err -ErrorAction SilentlyContinue
            Assert-KvmError $err -ErrorId NetworkExists -Command New-KvmNetwork -Category ResourceExists -TargetObject 'lab'
        }

        It 'refuses a DHCP range outside the subnet, naming the setting, and stores nothing' {
            New-KvmNetwork -Name outside -BridgeName (New-KvmTestNetName) -Subnet '10.248.2.0/24' -DhcpRangeStart '10.248.3.10' -DhcpRangeEnd '10.248.3.20' -ErrorVariable err -ErrorAction SilentlyContinue
            Assert-KvmError $err -ErrorId InvalidNetworkSetting -Command New-KvmNetwork -Category InvalidArgument -NoTarget
            "$($err[0])" | Should -Match 'DhcpRange'
            Get-KvmNetwork outside -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        }

        It 'refuses a subnet overlapping another network''s' {
            New-KvmNetwork -Name overlap -BridgeName (New-KvmTestNetName) -Subnet "10.249.$octet.128/25" -ErrorVariable err -ErrorAction SilentlyContinue
            Assert-KvmError $err -ErrorId InvalidNetworkSetting -Command New-KvmNetwork -Category InvalidArgument -NoTarget
            "$($err[0])" | Should -Match 'Subnet'
        }

        It 'takes its settings from the pipeline by property name' {
            $net = [pscustomobject]@{ Name = 'piped'; Mode = 'Isolated'; BridgeName = (New-KvmTestNetName); Subnet = '10.248.9.0/24' } | New-KvmNetwork
            $net.Mode | Should -Be 'Isolated'
        }

        It 'shows a table that fits 80 columns' {
            Assert-KvmView -InputObject @(Get-KvmNetwork) -View Table | Out-Null
        }
    }

    Context 'started in a network namespace' -Tag 'NetworkManager', 'NetworkHost' {
        BeforeAll { $script:ns = New-KvmTestNetName 'kvtns' }
        AfterAll { Remove-KvmTestNamespace $ns }

        It '-Start brings the network up: bridge with the gateway address, dnsmasq running' {
            $b = New-KvmTestNetName
            $r = Invoke-KvmTestInNamespace -Namespace $ns -Create -Script @"
`$n = New-KvmNetwork -Name started -BridgeName $b -Subnet 10.247.$octet.0/24 -Start
"STATE=`$(`$n.State) PID=`$(`$n.DnsmasqProcessId)"
ip -4 addr show $b
"@
            $r.ExitCode | Should -Be 0 -Because ($r.Output -join "`n")
            ($r.Output -join "`n") | Should -Match 'STATE=Active PID=\d+'
            ($r.Output -join "`n") | Should -Match "inet 10\.247\.$octet\.1/24"
            # Nothing of it on this host's own namespace.
            & ip link show $b 2>$null
            $LASTEXITCODE | Should -Not -Be 0
        }
    }
}
