#Requires -Version 7.4
# Remove-KvmVmSnapshot: children move up, -IncludeAllChildSnapshots, pipeline, -WhatIf, errors, help.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    New-KvmTestVm -Name rm-a | Out-Null
}

AfterAll { Complete-KvmTest }

Describe 'Remove-KvmVmSnapshot' {
    BeforeEach {
        Get-KvmVmSnapshot rm-a | Remove-KvmVmSnapshot -Confirm:$false
        'c1', 'c2', 'c3' | ForEach-Object { Checkpoint-KvmVm rm-a -SnapshotName $_ }
    }

    It 'removes one checkpoint; its child moves up to its parent' {
        Remove-KvmVmSnapshot rm-a c2 -Confirm:$false | Should -BeNullOrEmpty
        (Get-KvmVmSnapshot rm-a).Name | Should -Be @('c1', 'c3')
        (Get-KvmVmSnapshot rm-a c3).ParentSnapshotName | Should -Be 'c1'
    }

    It '-IncludeAllChildSnapshots removes the subtree; -PassThru outputs what went' {
        $removed = Get-KvmVmSnapshot rm-a c1 | Remove-KvmVmSnapshot -IncludeAllChildSnapshots -Confirm:$false -PassThru
        $removed.Name | Should -Be @('c1', 'c2', 'c3')
        Get-KvmVmSnapshot rm-a | Should -BeNullOrEmpty
    }

    It 'wildcards select several; -WhatIf removes nothing' {
        $lines = Get-KvmWhatIfLine { Remove-KvmVmSnapshot rm-a 'c*' -WhatIf }
        $lines.Count | Should -Be 3
        (Get-KvmVmSnapshot rm-a).Count | Should -Be 3
    }

    It 'reports a checkpoint that does not exist, naming it' {
        Remove-KvmVmSnapshot rm-a nosuch -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId SnapshotNotFound -Command Remove-KvmVmSnapshot -Category ObjectNotFound -TargetObject 'nosuch'
    }

    It 'has help' { Assert-KvmHelp Remove-KvmVmSnapshot | Out-Null }
}
