#Requires -Version 7.4
# Restart-KvmVm: a new VMM process with stored changes; pipeline, -PassThru, -WhatIf, -AsJob, errors, help.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    New-KvmTestVm -Name rs-a -Start | Out-Null
    New-KvmTestVm -Name rs-b -Start | Out-Null
    New-KvmTestVm -Name rs-off | Out-Null
}

AfterAll { Complete-KvmTest }

Describe 'Restart-KvmVm' {
    It 'restarts a running VM in a new VMM process that has the stored changes' {
        $before = Get-KvmVm rs-a
        Set-KvmVm rs-a -MemoryStartupBytes 96MB -WarningAction SilentlyContinue
        Restart-KvmVm rs-a -TurnOff | Should -BeNullOrEmpty
        $after = Get-KvmVm rs-a
        $after.State | Should -Be 'Running'
        $after.ProcessId | Should -Not -Be $before.ProcessId
        $after.MemoryAssignedBytes | Should -Be 96MB
    }

    It 'restarts gracefully (no -TurnOff) within the timeout' {
        $before = (Get-KvmVm rs-a).ProcessId
        Restart-KvmVm rs-a -TimeoutSec 5 -WarningAction SilentlyContinue
        $after = Get-KvmVm rs-a
        $after.State | Should -Be 'Running'
        $after.ProcessId | Should -Not -Be $before
    }

    It 'starts a VM that is off' {
        Restart-KvmVm rs-off -TurnOff
        (Get-KvmVm rs-off).State | Should -Be 'Running'
        Stop-KvmVm rs-off -TurnOff
    }

    It '-PassThru outputs the running VM' {
        $vm = Restart-KvmVm rs-a -TurnOff -PassThru
        $vm.Name | Should -Be 'rs-a'
        $vm.State | Should -Be 'Running'
    }

    It 'takes VM objects by value and names by property name' {
        $pids = (Get-KvmVm rs-a, rs-b).ProcessId
        Get-KvmVm rs-a | Restart-KvmVm -TurnOff
        [pscustomobject]@{ VMName = 'rs-b' } | Restart-KvmVm -TurnOff
        $after = Get-KvmVm rs-a, rs-b
        $after.State | Should -Be @('Running', 'Running')
        $after[0].ProcessId | Should -Not -Be $pids[0]
        $after[1].ProcessId | Should -Not -Be $pids[1]
    }

    It '-WhatIf restarts nothing' {
        $pidBefore = (Get-KvmVm rs-a).ProcessId
        $lines = Get-KvmWhatIfLine { Restart-KvmVm rs-a -WhatIf }
        $lines | Should -Match '"Restart VM" on target "rs-a"'
        (Get-KvmVm rs-a).ProcessId | Should -Be $pidBefore
    }

    It '-AsJob returns a job whose output is the restarted VM' {
        $job = Restart-KvmVm rs-b -TurnOff -AsJob -Confirm:$false
        $job | Should -BeOfType ([System.Management.Automation.Job])
        $result = $job | Receive-Job -Wait -AutoRemoveJob
        $result.Name | Should -Be 'rs-b'
        $result.State | Should -Be 'Running'
    }

    It 'reports a missing VM as ObjectNotFound; a wildcard matching nothing is silent' {
        Restart-KvmVm nosuch -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId VmNotFound -Command Restart-KvmVm -Category ObjectNotFound -TargetObject 'nosuch'
        Restart-KvmVm 'nosuch*' -ErrorVariable err
        $err | Should -BeNullOrEmpty
    }

    It 'has full help' {
        Assert-KvmHelp Restart-KvmVm | Out-Null
    }

    It 'completes VM names' {
        Get-KvmCompletion 'Restart-KvmVm -Name rs-o' | Should -Be @('rs-off')
    }
}
