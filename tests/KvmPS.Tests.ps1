#Requires -Version 7.4
#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0' }
<#
    Pester 5 tests of the published module (out/KvmPS), run by `./build.ps1 -Task Pester`.
    Every test works in its own temporary store ($env:KVMPS_HOME); the VM tests need /dev/kvm and
    out/bin/kvmps-vmm (or $env:KVMPS_VMM) and are skipped without them.
#>

BeforeDiscovery {
    $script:repoRoot = Split-Path -Parent $PSScriptRoot
    $script:manifestPath = Join-Path $repoRoot 'out/KvmPS/KvmPS.psd1'
    $script:exported = (Import-PowerShellDataFile $manifestPath).CmdletsToExport
    $vmm = if ($env:KVMPS_VMM) { $env:KVMPS_VMM } else { Join-Path $repoRoot 'out/bin/kvmps-vmm' }
    $script:canRunVms = (Test-Path /dev/kvm) -and (Test-Path $vmm)
}

BeforeAll {
    $repoRoot = Split-Path -Parent $PSScriptRoot
    if (-not $env:KVMPS_VMM) { $env:KVMPS_VMM = Join-Path $repoRoot 'out/bin/kvmps-vmm' }
    $script:savedHome = $env:KVMPS_HOME
    # Short path: the control socket path must fit in 107 bytes.
    $script:storeRoot = Join-Path ([IO.Path]::GetTempPath()) ('kps-' + [guid]::NewGuid().ToString('N').Substring(0, 8))
    $env:KVMPS_HOME = $storeRoot
    Import-Module (Join-Path $repoRoot 'out/KvmPS/KvmPS.psd1') -Force -ErrorAction Stop
}

AfterAll {
    Get-KvmVm -ErrorAction SilentlyContinue | Remove-KvmVm -Force -Confirm:$false -ErrorAction SilentlyContinue
    Remove-Module KvmPS -Force -ErrorAction SilentlyContinue
    $env:KVMPS_HOME = $script:savedHome
    Remove-Item -Recurse -Force $script:storeRoot -ErrorAction SilentlyContinue
}

Describe 'The KvmPS module' {
    It 'exports exactly the cmdlets of its manifest' {
        $commands = Get-Command -Module KvmPS
        ($commands | Where-Object CommandType -ne 'Cmdlet') | Should -BeNullOrEmpty
        ($commands.Name | Sort-Object) | Should -Be ($exported | Sort-Object)
    }

    It '<_> has help with a synopsis and at least two examples' -ForEach $exported {
        $help = Get-Help $_ -Full
        $help.Synopsis | Should -Not -BeNullOrEmpty
        $help.Synopsis | Should -Not -Match '^\s*\S+-Kvm\S+\s*\['   # not the auto-generated syntax line
        @($help.Examples.Example).Count | Should -BeGreaterOrEqual 2
    }

    It 'has the about_KvmPS topic' {
        (Get-Help about_KvmPS | Out-String) | Should -Match 'KVMPS_HOME'
    }

    It 'formats KvmVm as a table with Name, State, CPUs, MemoryMB and Uptime' {
        New-KvmVm -Name fmt1 -MemoryStartupBytes 64MB | Out-Null
        $table = Get-KvmVm fmt1 | Format-Table | Out-String
        foreach ($column in 'Name', 'State', 'CPUs', 'MemoryMB', 'Uptime') { $table | Should -Match $column }
        Remove-KvmVm fmt1 -Confirm:$false
    }
}

Describe 'Selection and -WhatIf' {
    BeforeAll {
        New-KvmVm -Name web-a -MemoryStartupBytes 64MB | Out-Null
        New-KvmVm -Name web-b -MemoryStartupBytes 64MB | Out-Null
        New-KvmVm -Name db-a -MemoryStartupBytes 64MB | Out-Null
    }
    AfterAll {
        Get-KvmVm web-*, db-* | Remove-KvmVm -Force -Confirm:$false
    }

    It 'Get-KvmVm matches wildcards' {
        (Get-KvmVm web*).Name | Should -Be @('web-a', 'web-b')
    }

    It 'Get-KvmVm reports a missing name with a stable error id' {
        Get-KvmVm nosuch -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -Be 'VmNotFound,KvmPS.Commands.GetKvmVmCommand'
        $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $err[0].TargetObject | Should -Be 'nosuch'
    }

    It 'Get-KvmVm web* | Stop-KvmVm -WhatIf changes nothing' {
        $before = Get-KvmVm | ForEach-Object { '{0}={1}' -f $_.Name, $_.State }
        Get-KvmVm web* | Stop-KvmVm -WhatIf
        Get-KvmVm web* | Remove-KvmVm -WhatIf
        Get-KvmVm web* | Set-KvmVcpu -Count 1 -WhatIf
        (Get-KvmVm | ForEach-Object { '{0}={1}' -f $_.Name, $_.State }) | Should -Be $before
        (Get-KvmVm web*).Count | Should -Be 2
    }

    It 'pipes VM objects by value and names by property name' {
        $vms = Get-KvmVm web*
        ($vms | Set-KvmVm -Notes 'piped' -PassThru).Notes | Should -Be @('piped', 'piped')
        ([pscustomobject]@{ Name = 'db-a' } | Set-KvmVm -Notes 'by name' -PassThru).Notes | Should -Be 'by name'
    }
}

Describe 'A VM on the built-in guest' -Skip:(-not $canRunVms) {
    BeforeAll {
        $script:vm = New-KvmVm -Name pester1 -MemoryStartupBytes 128MB -MemoryMinimumBytes 64MB -MemoryMaximumBytes 256MB -ProcessorCount 1 -MaximumProcessorCount 2
    }
    AfterAll {
        Remove-KvmVm -Name pester1 -Force -Confirm:$false -ErrorAction SilentlyContinue
    }

    It 'is created Off' {
        $vm.State | Should -Be 'Off'
        $vm.MemoryMB | Should -Be 128
    }

    It 'starts and shows as Running' {
        Start-KvmVm -Name pester1
        $running = Get-KvmVm pester1
        $running.State | Should -Be 'Running'
        $running.ProcessId | Should -BeGreaterThan 0
    }

    It 'takes a new vCPU count (live or at the next restart)' {
        $result = Set-KvmVcpu -Name pester1 -Count 2 -PassThru -WarningVariable warnings -WarningAction SilentlyContinue
        (Get-KvmVm pester1).Definition.Vcpus.Count | Should -Be 2
        if ($result.ProcessorCount -ne 2) { $warnings | Should -Not -BeNullOrEmpty }
    }

    It 'reports and sets the balloon target' {
        $status = Invoke-KvmBalloon -Name pester1
        $status.TargetBytes | Should -Be 128MB
        $status.CurrentBytes | Should -Be 128MB
        (Invoke-KvmBalloon -Name pester1 -TargetBytes 96MB -WarningAction SilentlyContinue).TargetBytes | Should -Be 96MB
        Invoke-KvmBalloon -Name pester1 -TargetBytes 1GB -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -BeLike 'InvalidVmSetting,*'
    }

    It 'starts as a job' {
        Stop-KvmVm -Name pester1 -TurnOff
        $job = Start-KvmVm -Name pester1 -AsJob
        $job | Should -BeOfType ([System.Management.Automation.Job])
        $result = $job | Receive-Job -Wait -AutoRemoveJob
        $result.State | Should -Be 'Running'
    }

    It 'stops' {
        Stop-KvmVm -Name pester1 -TimeoutSec 5
        (Get-KvmVm pester1).State | Should -Be 'Off'
    }

    It 'is removed' {
        Remove-KvmVm -Name pester1 -Confirm:$false
        Get-KvmVm pester1 -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
    }
}
