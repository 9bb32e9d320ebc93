#Requires -Version 7.4
# Start-KvmNetwork: -WhatIf; in a test-made network namespace: starts a network (bridge, dnsmasq), is idempotent, and
# repairs a Degraded one (dnsmasq killed). Tags as in New-KvmNetwork.Tests.ps1.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    $script:octet = Get-Random -Minimum 10 -Maximum 250
}

AfterAll {
    Complete-KvmTest
}

Describe 'Start-KvmNetwork' {
    Context 'without the host' {
        It '-WhatIf starts nothing' {
            $lines = Get-KvmWhatIfLine { Start-KvmNetwork -Name lab -WhatIf }
            $lines | Should -Be 'Performing the operation "Start network" on target "lab".'
        }

        It 'has full help' {
            Assert-KvmHelp Start-KvmNetwork | Out-Null
        }
    }

    Context 'in the store' -Tag 'NetworkManager' {
        It 'reports a missing network as NetworkNotFound' {
            Start-KvmNetwork missing -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
            Assert-KvmError $err -ErrorId NetworkNotFound -Command Start-KvmNetwork -Category ObjectNotFound -TargetObject 'missing'
        }
    }

    Context 'in a network namespace' -Tag 'NetworkManager', 'NetworkHost' {
        BeforeAll {
            $script:ns = New-KvmTestNetName 'kvtns'
            $script:bridge = New-KvmTestNetName
            # Defining touches no host state; only starting does, and that runs inside the namespace.
            New-KvmNetwork -Name lab -BridgeName $bridge -Subnet "10.249.$octet.0/24" | Out-Null
        }
        AfterAll { Remove-KvmTestNamespace $ns }

        It 'starts the network: Active, bridge up with the gateway address, dnsmasq running; again does nothing' {
            $r = Invoke-KvmTestInNamespace -Namespace $ns -Create -Script @"
`$first = Start-KvmNetwork lab -Confirm:`$false -PassThru
`$again = Start-KvmNetwork lab -Confirm:`$false -PassThru
"FIRST=`$(`$first.State) AGAIN=`$(`$again.State) SAMEPID=`$(`$first.DnsmasqProcessId -eq `$again.DnsmasqProcessId)"
ip -4 -o addr show $bridge
"@
            $text = $r.Output -join "`n"
            $r.ExitCode | Should -Be 0 -Because $text
            $text | Should -Match 'FIRST=Active AGAIN=Active SAMEPID=True'
            $text | Should -Match "inet 10\.249\.$octet\.1/24"
        }

        It 'repairs a Degraded network (its dnsmasq killed)' {
            $r = Invoke-KvmTestInNamespace -Namespace $ns -Script @'
Stop-Process -Id (Get-KvmNetwork lab).DnsmasqProcessId -Force
Start-Sleep -Milliseconds 300
$broken = Get-KvmNetwork lab
"BROKEN=$($broken.State) PROBLEMS=$($broken.Problems -join ';')"
$fixed = Start-KvmNetwork lab -Confirm:$false -PassThru
"FIXED=$($fixed.State) PID=$($fixed.DnsmasqProcessId)"
'@
            $text = $r.Output -join "`n"
            $r.ExitCode | Should -Be 0 -Because $text
            $text | Should -Match 'BROKEN=Degraded PROBLEMS=.*dnsmasq'
            $text | Should -Match 'FIXED=Active PID=\d+'
        }
    }
}
