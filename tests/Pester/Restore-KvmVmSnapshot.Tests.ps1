#Requires -Version 7.4
# Restore-KvmVmSnapshot: disk-only and memory checkpoints, ConfirmImpact High with the loss stated, pipeline, errors, help.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    New-KvmTestVm -Name rs-off | Out-Null
    New-KvmTestVm -Name rs-run -Start | Out-Null
}

AfterAll { Complete-KvmTest }

Describe 'Restore-KvmVmSnapshot' {
    It 'puts the settings of a VM that is off back to the checkpoint' {
        Set-KvmVm rs-off -Notes 'before' -Confirm:$false
        Checkpoint-KvmVm rs-off -SnapshotName s1
        Set-KvmVm rs-off -Notes 'after' -Confirm:$false
        $vm = Restore-KvmVmSnapshot -VMName rs-off -Name s1 -Confirm:$false -PassThru
        $vm.Notes | Should -Be 'before'
        $vm.State | Should -Be 'Off'
    }

    It 'restores a running VM from a checkpoint with memory into a new VMM that runs' {
        Checkpoint-KvmVm rs-run -SnapshotName live
        $pidBefore = (Get-KvmVm rs-run).ProcessId
        $vm = Get-KvmVmSnapshot rs-run live | Restore-KvmVmSnapshot -Confirm:$false -PassThru
        $vm.State | Should -Be 'Running'
        $vm.ProcessId | Should -Not -Be $pidBefore
    }

    It 'asks first (ConfirmImpact High) and says the current state is lost' {
        $lines = Get-KvmWhatIfLine { Restore-KvmVmSnapshot rs-run live -WhatIf }
        $lines | Should -Match "Restore checkpoint 'live'.*it is turned off and its current state is lost"
        (Get-Command Restore-KvmVmSnapshot).ImplementingType.GetCustomAttributes([System.Management.Automation.CmdletAttribute], $false)[0].ConfirmImpact | Should -Be 'High'
        $r = Invoke-KvmChildPwsh "Restore-KvmVmSnapshot rs-run live; 'done'"
        ($r.Output + $r.Error) -join "`n" | Should -Match 'ConfirmationNotPossible|confirmation'
        (Get-KvmVm rs-run).State | Should -Be 'Running'
    }

    It 'reports a checkpoint that does not exist, naming it' {
        Restore-KvmVmSnapshot rs-off nosuch -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId SnapshotNotFound -Command Restore-KvmVmSnapshot -Category ObjectNotFound -TargetObject 'nosuch'
    }

    It 'has help' { Assert-KvmHelp Restore-KvmVmSnapshot | Out-Null }
}
