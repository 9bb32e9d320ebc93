#Requires -Version 7.4
# Invoke-KvmDesiredState: plan and apply manifests on real VMs; -WhatIf text, results and their view, idempotence,
# repair of drift, RestartIfNeeded, -AsJob, manifest errors, the examples' round trip, help.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    $script:host1 = New-KvmTestManifest 'host.psd1' @'
@{
    Defaults        = @{ MemoryStartupBytes = 64MB; State = 'Running' }
    VirtualMachines = @(
        @{ Name = 'ids-web'; VcpuCount = 2; Notes = 'front end' }
        @{ Name = 'ids-db' }
        @{ Name = 'ids-cold'; State = 'Off' }
    )
}
'@
}

AfterAll { Complete-KvmTest }

Describe 'Invoke-KvmDesiredState' {
    Context 'a new host' {
        It '-WhatIf changes nothing and shows one line per step' {
            $lines = @(Get-KvmWhatIfLine { Invoke-KvmDesiredState -Path $host1 -WhatIf })
            $lines.Count | Should -Be 5 -Because 'three creates and two starts'
            ($lines -match 'ids-web').Count | Should -Be 2
            Get-KvmVm 'ids-*' | Should -BeNullOrEmpty
        }

        It '-WhatIf text says each step once ("Create VM", not "Create: Create VM") and counts right' -Tag 'Issue9' {
            $lines = @(Get-KvmWhatIfLine { Invoke-KvmDesiredState -Path $host1 -WhatIf })
            foreach ($line in $lines) {
                $line | Should -Not -Match '\b(\w+): \1\b' -Because 'the action kind is not repeated before its description'
                $line | Should -Not -Match '\b1 vCPUs\b'
            }
        }

        It 'creates and starts the VMs, outputting one result per step' {
            $results = @(Invoke-KvmDesiredState -Path $host1 -Confirm:$false)
            $results.Count | Should -Be 5
            $results | ForEach-Object { $_.Status.ToString() } | Sort-Object -Unique | Should -Be 'Done'
            ($results | ForEach-Object { $_.Action.Kind.ToString() }) | Should -Be @('Create', 'Create', 'Create', 'Start', 'Start')
            $web = Get-KvmVm ids-web
            $web.State | Should -Be 'Running'
            $web.ProcessorCount | Should -Be 2
            $web.Notes | Should -Be 'front end'
            (Get-KvmVm ids-cold).State | Should -Be 'Off'
        }

        It 'round trip: Test-KvmDesiredState is $true after Invoke-KvmDesiredState' {
            Test-KvmDesiredState $host1 | Should -BeTrue
        }

        It 'is idempotent: a second run does nothing and outputs nothing' {
            Invoke-KvmDesiredState -Path $host1 -Confirm:$false -WarningVariable warnings | Should -BeNullOrEmpty
            $warnings | Should -BeNullOrEmpty
            Test-KvmDesiredState $host1 | Should -BeTrue
        }
    }

    Context 'results view' {
        It 'shows the results as a table, one line per step, in 80 columns' -Tag 'Issue9' {
            $m = New-KvmTestManifest 'view.psd1' @'
@{ Defaults = @{ MemoryStartupBytes = 64MB; State = 'Running' }
   VirtualMachines = @( @{ Name = 'ids-v1' }, @{ Name = 'ids-v2' }, @{ Name = 'ids-v3' } ) }
'@
            $results = @(Invoke-KvmDesiredState $m -Confirm:$false)
            $results.Count | Should -Be 6
            $lines = Assert-KvmView $results -View Default
            $lines.Count | Should -Be 8 -Because "a header, its dashes and one line per step:`n$($lines -join "`n")"
            Remove-KvmVm 'ids-v*' -Force -Confirm:$false
        }
    }

    Context 'drift' {
        It 'starts a VM stopped by hand, and nothing else' {
            Stop-KvmVm ids-db -TurnOff
            $results = @(Invoke-KvmDesiredState $host1 -Confirm:$false)
            $results.Count | Should -Be 1
            $results[0].Action.Kind.ToString() | Should -Be 'Start'
            $results[0].Action.VmName | Should -Be 'ids-db'
            (Get-KvmVm ids-db).State | Should -Be 'Running'
            Test-KvmDesiredState $host1 | Should -BeTrue
        }

        It 'puts back a setting changed by hand on a running VM' {
            Set-KvmVm ids-web -Notes 'changed by hand'
            $results = @(Invoke-KvmDesiredState $host1 -Confirm:$false)
            $results.Count | Should -Be 1
            $results[0].Action.Kind.ToString() | Should -Be 'UpdateLive'
            (Get-KvmVm ids-web).Notes | Should -Be 'front end'
        }

        It 'applies a vCPU count edited in the manifest to the running VM live, in the same VMM' {
            $m = New-KvmTestManifest 'cpus.psd1' "@{ Name = 'ids-hot'; MemoryStartupBytes = 64MB; VcpuCount = 1; VcpuMaximum = 4; State = 'Running' }"
            Invoke-KvmDesiredState $m -Confirm:$false | Out-Null
            $pidBefore = (Get-KvmVm ids-hot).ProcessId
            $m = New-KvmTestManifest 'cpus.psd1' "@{ Name = 'ids-hot'; MemoryStartupBytes = 64MB; VcpuCount = 3; VcpuMaximum = 4; State = 'Running' }"
            $results = @(Invoke-KvmDesiredState $m -Confirm:$false -WarningVariable warnings)
            ($results | ForEach-Object { $_.Action.Kind.ToString() }) | Should -Be @('UpdateLive')
            $warnings | Should -BeNullOrEmpty
            $vm = Get-KvmVm ids-hot
            $vm.ProcessId | Should -Be $pidBefore
            $vm.ProcessorCount | Should -Be 3 -Because 'the running VMM reports three vCPUs'
            Test-KvmDesiredState $m | Should -BeTrue
            # A higher maximum is restart-only: stored, with a warning, the VMM unchanged.
            $m = New-KvmTestManifest 'cpus.psd1' "@{ Name = 'ids-hot'; MemoryStartupBytes = 64MB; VcpuCount = 3; VcpuMaximum = 8; State = 'Running' }"
            $results = @(Invoke-KvmDesiredState $m -Confirm:$false -WarningVariable warnings -WarningAction SilentlyContinue)
            ($results | ForEach-Object { $_.Action.Kind.ToString() }) | Should -Be @('UpdateNeedsRestart')
            "$warnings" | Should -Match 'VcpuMaximum'
            (Get-KvmVm ids-hot).ProcessId | Should -Be $pidBefore
            Remove-KvmTestVm ids-hot
        }

        It 'hot-adds a disk listed in the manifest to the running VM and removes it again, in the same VMM' {
            $m = New-KvmTestManifest 'disks.psd1' "@{ Name = 'ids-disk'; MemoryStartupBytes = 64MB; State = 'Running'; Disks = @() }"
            Invoke-KvmDesiredState $m -Confirm:$false | Out-Null
            $pidBefore = (Get-KvmVm ids-disk).ProcessId
            $m = New-KvmTestManifest 'disks.psd1' "@{ Name = 'ids-disk'; MemoryStartupBytes = 64MB; State = 'Running'; Disks = @( @{ Path = 'live.qcow2'; SizeBytes = 4MB } ) }"
            $results = @(Invoke-KvmDesiredState $m -Confirm:$false -WarningVariable warnings)
            ($results | ForEach-Object { $_.Action.Kind.ToString() }) | Should -Be @('UpdateLive')
            $warnings | Should -BeNullOrEmpty
            $vm = Get-KvmVm ids-disk
            $vm.ProcessId | Should -Be $pidBefore
            (Get-KvmTestLiveDevice ids-disk | Where-Object Type -eq 'block').Path | Should -Be (Join-Path $vm.Path 'disks/live.qcow2')
            Test-KvmDesiredState $m | Should -BeTrue
            $m = New-KvmTestManifest 'disks.psd1' "@{ Name = 'ids-disk'; MemoryStartupBytes = 64MB; State = 'Running'; Disks = @() }"
            ($(Invoke-KvmDesiredState $m -Confirm:$false) | ForEach-Object { $_.Action.Kind.ToString() }) | Should -Be @('UpdateLive')
            (Get-KvmVm ids-disk).ProcessId | Should -Be $pidBefore
            Get-KvmTestLiveDevice ids-disk | Where-Object Type -eq 'block' | Should -BeNullOrEmpty
            Remove-KvmTestVm ids-disk
        }

        It 'applies memory edited in the manifest to the running VM live (virtio-mem) within its maximum, in the same VMM' {
            $m = New-KvmTestManifest 'mem.psd1' "@{ Name = 'ids-mem'; MemoryStartupBytes = 256MB; MemoryMaximumBytes = 1GB; State = 'Running' }"
            Invoke-KvmDesiredState $m -Confirm:$false | Out-Null
            $pidBefore = (Get-KvmVm ids-mem).ProcessId
            $m = New-KvmTestManifest 'mem.psd1' "@{ Name = 'ids-mem'; MemoryStartupBytes = 512MB; MemoryMaximumBytes = 1GB; State = 'Running' }"
            $results = @(Invoke-KvmDesiredState $m -Confirm:$false -WarningVariable warnings)
            ($results | ForEach-Object { $_.Action.Kind.ToString() }) | Should -Be @('UpdateLive')
            $warnings | Should -BeNullOrEmpty
            $vm = Get-KvmVm ids-mem
            $vm.ProcessId | Should -Be $pidBefore
            $vm.MemoryDemandBytes | Should -Be 512MB -Because 'the VMM was asked for 512 MiB (memory.get requested_bytes)'
            Test-KvmDesiredState $m | Should -BeTrue
            # A higher maximum is restart-only.
            $m = New-KvmTestManifest 'mem.psd1' "@{ Name = 'ids-mem'; MemoryStartupBytes = 512MB; MemoryMaximumBytes = 2GB; State = 'Running' }"
            $results = @(Invoke-KvmDesiredState $m -Confirm:$false -WarningVariable warnings -WarningAction SilentlyContinue)
            ($results | ForEach-Object { $_.Action.Kind.ToString() }) | Should -Be @('UpdateNeedsRestart')
            "$warnings" | Should -Match 'MemoryMaximumBytes'
            (Get-KvmVm ids-mem).ProcessId | Should -Be $pidBefore
            Remove-KvmTestVm ids-mem
        }

        It 'restarts a running VM for a change that needs it when the manifest says RestartIfNeeded' {
            $pidBefore = (Get-KvmVm ids-db).ProcessId
            $m = New-KvmTestManifest 'bigger.psd1' "@{ Name = 'ids-db'; MemoryStartupBytes = 96MB; State = 'Running'; RestartIfNeeded = `$true }"
            $results = @(Invoke-KvmDesiredState $m -Confirm:$false)
            ($results | ForEach-Object { $_.Action.Kind.ToString() }) | Should -Be @('Stop', 'Update', 'Start')
            $db = Get-KvmVm ids-db
            $db.MemoryAssignedBytes | Should -Be 96MB
            $db.ProcessId | Should -Not -Be $pidBefore
            Test-KvmDesiredState $m | Should -BeTrue
        }
    }

    Context 'pipeline, jobs and errors' {
        It 'takes manifests from Get-ChildItem by FullName' {
            $results = Get-ChildItem -LiteralPath $host1 | Invoke-KvmDesiredState -Confirm:$false -WarningAction SilentlyContinue
            Get-ChildItem -LiteralPath $host1 | Test-KvmDesiredState | Should -BeTrue
        }

        It '-AsJob returns a job whose output is the step results (Ensure = Absent stops and removes)' {
            $retire = New-KvmTestManifest 'retire.psd1' "@{ VirtualMachines = @( @{ Name = 'ids-db'; Ensure = 'Absent' } ) }"
            $job = Invoke-KvmDesiredState -Path $retire -AsJob -Confirm:$false
            $job | Should -BeOfType ([System.Management.Automation.Job])
            $results = $job | Receive-Job -Wait -AutoRemoveJob
            ($results | ForEach-Object { $_.Action.Kind.ToString() }) | Should -Be @('Stop', 'Remove')
            Get-KvmVm ids-db -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
            Test-KvmDesiredState $retire | Should -BeTrue
        }

        It 'reports a VM defined in two files, naming both places, and changes nothing' {
            $a = New-KvmTestManifest 'dup-a.psd1' "@{ Name = 'ids-dup'; MemoryStartupBytes = 64MB }"
            $b = New-KvmTestManifest 'dup-b.psd1' "@{ Name = 'ids-dup'; MemoryStartupBytes = 64MB }"
            Invoke-KvmDesiredState -Path $a, $b -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
            $err.Count | Should -Be 1
            $err[0].FullyQualifiedErrorId | Should -Be 'InvalidManifest,KvmPS.Commands.InvokeKvmDesiredStateCommand'
            $err[0].CategoryInfo.Category | Should -Be 'ParserError'
            "$($err[0])" | Should -BeLike "*VM 'ids-dup': Name: the VM is defined twice (first at $a`:1:1)"
            Get-KvmVm ids-dup -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        }

        It 'reports a schema error at file:line:column and changes nothing' {
            $entry = "  @{ Name = 'ids-bad'; MemoryStartupBytes = 64MB; Vcpus = 2 }"
            $bad = New-KvmTestManifest 'bad.psd1' "@{ VirtualMachines = @(`n$entry`n) }"
            $column = $entry.IndexOf('Vcpus') + 1
            Invoke-KvmDesiredState -Path $bad -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
            "$($err[0])" | Should -BeLike "$bad`:2:$column`: VM 'ids-bad': Vcpus: unknown key 'Vcpus'*"
            "$($err[0].TargetObject)" | Should -Be $bad
            Get-KvmVm ids-bad -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        }
    }

    Context 'the examples' {
        It 'round trip of examples/<_>: applied, then Test-KvmDesiredState is $true' -ForEach 'host.psd1', 'single-vm.psd1' {
            $example = Join-Path (Get-KvmTestRepoRoot) "examples/$_"
            $results = @(Invoke-KvmDesiredState $example -Confirm:$false)
            $results.Count | Should -BeGreaterThan 0
            $results | ForEach-Object { $_.Status.ToString() } | Sort-Object -Unique | Should -Be 'Done'
            Test-KvmDesiredState $example | Should -BeTrue
            $names = (Import-PowerShellDataFile $example) | ForEach-Object { if ($_.VirtualMachines) { $_.VirtualMachines.Name } else { $_.Name } }
            Remove-KvmVm $names -Force -Confirm:$false
        }
    }

    It 'has full help' {
        Assert-KvmHelp Invoke-KvmDesiredState | Out-Null
    }
}

# A manifest with a network and VMs on it, applied for real: everything runs in a pwsh inside a test-made network
# namespace, so the bridge, nftables table and dnsmasq stay there. Needs lane net-core's NetworkManager.
Describe 'Invoke-KvmDesiredState with Networks' -Tag 'NetworkManager', 'NetworkHost' {
    BeforeAll {
        $script:ns = New-KvmTestNetName 'kvtns'
        $script:netBridge = New-KvmTestNetName
        $octet = Get-Random -Minimum 10 -Maximum 250
        $script:netManifest = New-KvmTestManifest 'net-host.psd1' @"
@{
    Networks        = @( @{ Name = 'dslab'; Mode = 'Nat'; Bridge = '$netBridge'; Subnet = '10.241.$octet.0/24'; Autostart = `$true } )
    VirtualMachines = @( @{ Name = 'ids-net1'; MemoryStartupBytes = 64MB; State = 'Running'; NetworkAdapters = @( @{ Network = 'dslab' } ) } )
}
"@
    }
    AfterAll {
        Invoke-KvmTestInNamespace -Namespace $ns -Script "Remove-KvmVm ids-net1 -Force -Confirm:`$false -ErrorAction SilentlyContinue" | Out-Null
        Remove-KvmTestNamespace $ns
    }

    It 'applies from empty (network created and started before the VM), then finds nothing to do' {
        $r = Invoke-KvmTestInNamespace -Namespace $ns -Create -Script @"
`$results = @(Invoke-KvmDesiredState -Path '$netManifest' -Confirm:`$false)
'STEPS=' + ((`$results | ForEach-Object { "`$(`$_.Action.Kind):`$(`$_.Status)" }) -join ' ')
'STATE=' + (Get-KvmNetwork dslab).State + ' VM=' + (Get-KvmVm ids-net1).State
'ADAPTER=' + (Get-KvmVmNetworkAdapter ids-net1).Network
'AGAIN=' + @(Invoke-KvmDesiredState -Path '$netManifest' -Confirm:`$false).Count
'TEST=' + (Test-KvmDesiredState -Path '$netManifest')
"@
        $text = $r.Output -join "`n"
        $r.ExitCode | Should -Be 0 -Because $text
        $text | Should -Match 'STEPS=CreateNetwork:Done StartNetwork:Done Create:Done Start:Done'
        $text | Should -Match 'STATE=Active VM=Running'
        $text | Should -Match 'ADAPTER=dslab'
        $text | Should -Match 'AGAIN=0'
        $text | Should -Match 'TEST=True'
    }

    It 'reports a killed dnsmasq as drift on the network and repairs it' {
        $r = Invoke-KvmTestInNamespace -Namespace $ns -Script @"
Stop-Process -Id (Get-KvmNetwork dslab).DnsmasqProcessId -Force
Start-Sleep -Milliseconds 300
'DRIFT=' + ((Test-KvmDesiredState -Path '$netManifest' -Detailed | ForEach-Object { "`$(`$_.VmName).`$(`$_.Property)=`$(`$_.Actual)" }) -join ' | ')
`$repair = @(Invoke-KvmDesiredState -Path '$netManifest' -Confirm:`$false)
'REPAIR=' + ((`$repair | ForEach-Object { "`$(`$_.Action.Kind):`$(`$_.Status)" }) -join ' ')
'TEST=' + (Test-KvmDesiredState -Path '$netManifest')
"@
        $text = $r.Output -join "`n"
        $r.ExitCode | Should -Be 0 -Because $text
        $text | Should -Match 'DRIFT=Networks\.dslab\.State=Degraded \(.*dnsmasq'
        $text | Should -Match '(?m)^REPAIR=StartNetwork:Done$'
        $text | Should -Match 'TEST=True'
    }

    It 'exports the network with the VM, and the export tests clean' {
        $r = Invoke-KvmTestInNamespace -Namespace $ns -Script @"
`$file = Join-Path `$env:KVMPS_HOME 'exported.psd1'
Export-KvmDesiredState -Name ids-net1 -Path `$file -Confirm:`$false | Out-Null
'HAS=' + [bool](Select-String -Path `$file -Pattern "Networks = @\(" -Quiet) + ' NIC=' + [bool](Select-String -Path `$file -Pattern "Network = 'dslab'" -Quiet)
'TEST=' + (Test-KvmDesiredState -Path `$file)
"@
        $text = $r.Output -join "`n"
        $r.ExitCode | Should -Be 0 -Because $text
        $text | Should -Match 'HAS=True NIC=True'
        $text | Should -Match 'TEST=True'
    }
}
