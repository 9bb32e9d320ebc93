#Requires -Version 7.4
# Stop-KvmNetwork: -WhatIf; in a test-made network namespace: stops a network (bridge and dnsmasq gone, still
# defined), is idempotent, and refuses while a running VM uses it. Tags as in New-KvmNetwork.Tests.ps1.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    $script:octet = Get-Random -Minimum 10 -Maximum 250
}

AfterAll {
    Complete-KvmTest
}

Describe 'Stop-KvmNetwork' {
    Context 'without the host' {
        It '-WhatIf stops nothing' {
            $lines = Get-KvmWhatIfLine { Stop-KvmNetwork -Name lab -WhatIf }
            $lines | Should -Be 'Performing the operation "Stop network" on target "lab".'
        }

        It 'has full help' {
            Assert-KvmHelp Stop-KvmNetwork | Out-Null
        }
    }

    Context 'in a network namespace' -Tag 'NetworkManager', 'NetworkHost' {
        BeforeAll {
            $script:ns = New-KvmTestNetName 'kvtns'
            $script:bridge = New-KvmTestNetName
            New-KvmNetwork -Name lab -BridgeName $bridge -Subnet "10.249.$octet.0/24" | Out-Null
        }
        AfterAll { Remove-KvmTestNamespace $ns }

        It 'stops a started network: Inactive, bridge gone, still defined; again does nothing' {
            $r = Invoke-KvmTestInNamespace -Namespace $ns -Create -Script @"
`$pid0 = (Start-KvmNetwork lab -Confirm:`$false -PassThru).DnsmasqProcessId
`$stopped = Stop-KvmNetwork lab -Confirm:`$false -PassThru
`$again = Stop-KvmNetwork lab -Confirm:`$false -PassThru
# A dnsmasq that exited may linger as a zombie until reaped: only a live one (not state Z) counts as running.
`$status = if (Test-Path /proc/`$pid0/status) { (Get-Content /proc/`$pid0/status | Select-String '^State:').Line } else { 'State: gone' }
"STOPPED=`$(`$stopped.State) AGAIN=`$(`$again.State) DNSMASQ=`$(`$status -notmatch 'gone|\bZ\b')"
ip link show $bridge 2>&1 | Out-Null
"BRIDGE=`$LASTEXITCODE"
"@
            $text = $r.Output -join "`n"
            $r.ExitCode | Should -Be 0 -Because $text
            $text | Should -Match 'STOPPED=Inactive AGAIN=Inactive DNSMASQ=False'
            $text | Should -Match 'BRIDGE=[1-9]'
            (Get-KvmNetwork lab).Name | Should -Be 'lab'
        }

        It 'refuses while a running VM has an adapter on it, naming the VM' {
            $r = Invoke-KvmTestInNamespace -Namespace $ns -Script @'
Start-KvmNetwork lab -Confirm:$false | Out-Null
New-KvmVm -Name netvm -MemoryStartupBytes 64MB -Confirm:$false | Out-Null
Add-KvmNetworkAdapter -Name netvm -Network lab -Confirm:$false
Start-KvmVm netvm -Confirm:$false
Stop-KvmNetwork lab -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
"ERROR=$($err[0].FullyQualifiedErrorId) MESSAGE=$($err[0])"
"STATE=$((Get-KvmNetwork lab).State)"
Remove-KvmVm netvm -Force -Confirm:$false
'@
            $text = $r.Output -join "`n"
            $r.ExitCode | Should -Be 0 -Because $text
            $text | Should -Match 'ERROR=NetworkInUse,KvmPS.Commands.StopKvmNetworkCommand MESSAGE=.*netvm'
            $text | Should -Match 'STATE=Active'
        }
    }
}
