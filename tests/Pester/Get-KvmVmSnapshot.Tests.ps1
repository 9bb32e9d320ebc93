#Requires -Version 7.4
# Get-KvmVmSnapshot: listing, wildcards, pipeline from Get-KvmVm, errors, the 80-column view, completion, help.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    New-KvmTestVm -Name gs-a | Out-Null
    New-KvmTestVm -Name gs-b | Out-Null
    Checkpoint-KvmVm gs-a -SnapshotName 'before upgrade'
    Checkpoint-KvmVm gs-a -SnapshotName 'after upgrade'
    Checkpoint-KvmVm gs-b -SnapshotName 'base'
}

AfterAll { Complete-KvmTest }

Describe 'Get-KvmVmSnapshot' {
    It 'lists the checkpoints of a VM, oldest first, with their parent' {
        $s = Get-KvmVmSnapshot -VMName gs-a
        $s.Name | Should -Be @('before upgrade', 'after upgrade')
        $s[1].ParentSnapshotName | Should -Be 'before upgrade'
        $s[0].VMName | Should -Be 'gs-a'
        $s[0].SizeBytes | Should -BeGreaterThan 0
    }

    It 'lists every VM''s checkpoints without -VMName, and filters by wildcard, ignoring case' {
        (Get-KvmVmSnapshot).Count | Should -Be 3
        (Get-KvmVmSnapshot -Name '*UPGRADE').Count | Should -Be 2
        (Get-KvmVmSnapshot gs-* base).VMName | Should -Be 'gs-b'
    }

    It 'takes VM objects from the pipeline' {
        (Get-KvmVm gs-b | Get-KvmVmSnapshot).Name | Should -Be 'base'
    }

    It 'reports a checkpoint name that matches nothing, naming it; a wildcard is silent' {
        Get-KvmVmSnapshot gs-a nosuch -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId SnapshotNotFound -Command Get-KvmVmSnapshot -Category ObjectNotFound -TargetObject 'nosuch'
        Get-KvmVmSnapshot gs-a 'nosuch*' -ErrorVariable err
        $err | Should -BeNullOrEmpty
    }

    It 'reports corrupt checkpoint metadata as InvalidData naming the file' {
        $s = Checkpoint-KvmVm gs-b -SnapshotName broken -PassThru
        $file = Join-Path $s.Path 'snapshot.json'
        Set-Content -LiteralPath $file -Value '{ not json'
        try {
            Get-KvmVmSnapshot gs-b -ErrorVariable err -ErrorAction SilentlyContinue
            Assert-KvmError $err -ErrorId SnapshotCorrupt -Command Get-KvmVmSnapshot -Category InvalidData -TargetObject $file
            "$($err[0])" | Should -Match ([regex]::Escape($file))
        }
        finally { Remove-Item -LiteralPath $s.Path -Recurse -Force }
    }

    It 'shows a table and a list that fit 80 columns' {
        $lines = Assert-KvmView (Get-KvmVmSnapshot) -View Table
        $lines[0] | Should -Match '^VMName\s+Name\s+Type\s+CreationTime\s+Parent'
        Assert-KvmView (Get-KvmVmSnapshot gs-a) -View List | Out-Null
    }

    It 'completes checkpoint names of the VM given' {
        Get-KvmCompletion 'Get-KvmVmSnapshot -VMName gs-a -Name bef' | Should -Be @("'before upgrade'")
        Get-KvmCompletion 'Get-KvmVmSnapshot -VMName gs-b -Name ' | Should -Be @('base')
    }

    It 'has help' { Assert-KvmHelp Get-KvmVmSnapshot | Out-Null }
}
