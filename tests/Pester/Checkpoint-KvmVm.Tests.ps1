#Requires -Version 7.4
# Checkpoint-KvmVm: checkpoints of running and off VMs; default names, conflicts, raw disks, pipeline, -WhatIf, help.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    New-KvmTestVm -Name cp-off | Out-Null
    New-KvmTestVm -Name cp-run -Start | Out-Null
}

AfterAll { Complete-KvmTest }

Describe 'Checkpoint-KvmVm' {
    It 'takes a disk-only checkpoint of a VM that is off; nothing is output without -PassThru' {
        Checkpoint-KvmVm cp-off -SnapshotName s1 | Should -BeNullOrEmpty
        $s = Get-KvmVmSnapshot cp-off s1
        $s.SnapshotType | Should -Be 'DiskOnly'
        $s.State | Should -Be 'Off'
        $s.ParentSnapshotId | Should -BeNullOrEmpty
    }

    It '-PassThru outputs the checkpoint, whose parent is the previous one' {
        $s = Checkpoint-KvmVm cp-off -SnapshotName s2 -PassThru
        $s | Should -BeOfType ([KvmPS.PowerShell.KvmVmSnapshot])
        $s.ParentSnapshotName | Should -Be 's1'
    }

    It 'names a checkpoint as Hyper-V does when -SnapshotName is omitted' {
        $s = Get-KvmVm cp-off | Checkpoint-KvmVm -PassThru
        $s.Name | Should -Match '^cp-off - \(.+\)$'
    }

    It 'checkpoints a running VM with its memory; the VM keeps running' {
        $pidBefore = (Get-KvmVm cp-run).ProcessId
        $s = Checkpoint-KvmVm cp-run -SnapshotName live -PassThru
        $s.SnapshotType | Should -Be 'Standard'
        $s.IncludesMemory | Should -BeTrue
        $s.State | Should -Be 'Running'
        Test-Path (Join-Path $s.Path 'vmm/state.bin') | Should -BeTrue
        (Get-KvmVm cp-run).State | Should -Be 'Running'
        (Get-KvmVm cp-run).ProcessId | Should -Be $pidBefore
    }

    It '-Incremental takes the memory changed since the previous checkpoint, which it keeps from removal' {
        $s = Checkpoint-KvmVm cp-run -SnapshotName live-inc -Incremental -PassThru
        $s.IsIncremental | Should -BeTrue
        $s.ParentSnapshotName | Should -Be 'live'
        (Get-KvmVmSnapshot -VMName cp-run -Name live).IsIncremental | Should -BeFalse
        Get-Content (Join-Path $s.Path 'vmm/parent') | Should -Be (Join-Path (Get-KvmVmSnapshot -VMName cp-run -Name live).Path 'vmm')
        Remove-KvmVmSnapshot -VMName cp-run -Name live -ErrorVariable err -ErrorAction SilentlyContinue
        $err.Count | Should -Be 1
        "$($err[0])" | Should -Match "'live'.*'live-inc'"
        (Get-KvmVmSnapshot -VMName cp-run).Name | Should -Contain 'live'
        Remove-KvmVmSnapshot -VMName cp-run -Name live-inc
    }

    It '-Incremental on a VM that is off is refused and takes nothing' {
        Checkpoint-KvmVm cp-off -SnapshotName inc-off -Incremental -ErrorVariable err -ErrorAction SilentlyContinue
        $err.Count | Should -Be 1
        "$($err[0])" | Should -Match 'running or paused'
        (Get-KvmVmSnapshot -VMName cp-off).Name | Should -Not -Contain 'inc-off'
    }

    It 'refuses a name the VM already has, naming it' {
        Checkpoint-KvmVm cp-off -SnapshotName s1 -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId SnapshotAlreadyExists -Command Checkpoint-KvmVm -Category ResourceExists -TargetObject 's1'
    }

    It 'refuses a raw disk naming it, unless -AllowRawDisks' {
        $raw = Join-Path $env:KVMPS_HOME 'raw.img'
        New-KvmDiskImage -Path $raw -SizeBytes 1MB -Format Raw | Out-Null
        Add-KvmDisk cp-off -Path $raw -Confirm:$false
        try {
            Checkpoint-KvmVm cp-off -SnapshotName r1 -ErrorVariable err -ErrorAction SilentlyContinue
            Assert-KvmError $err -ErrorId RawDiskNotCheckpointable -Command Checkpoint-KvmVm -Category InvalidOperation -TargetObject $raw
            (Checkpoint-KvmVm cp-off -SnapshotName r1 -AllowRawDisks -PassThru).DiskSnapshots | Should -BeNullOrEmpty
        }
        finally { Remove-KvmDisk cp-off -Path $raw -Confirm:$false }
    }

    It 'gives each writable qcow2 disk an internal snapshot with the checkpoint''s id; restoring reverts the disk' {
        $qcow = Join-Path $env:KVMPS_HOME 'data.qcow2'
        New-KvmDiskImage -Path $qcow -SizeBytes 1MB -Format Qcow2 | Out-Null
        Add-KvmDisk cp-off -Path $qcow -Confirm:$false
        try {
            $s = Checkpoint-KvmVm cp-off -SnapshotName q1 -PassThru
            $s.DiskSnapshots | Should -Be @($qcow)
            $inImage = [KvmPS.Storage.DiskSnapshots]::List($qcow)
            $inImage.Id | Should -Be $s.Id
            $inImage.Name | Should -Be 'q1'
            Restore-KvmVmSnapshot cp-off q1 -Confirm:$false
            Remove-KvmVmSnapshot cp-off q1 -Confirm:$false
            [KvmPS.Storage.DiskSnapshots]::List($qcow) | Should -BeNullOrEmpty
        }
        finally { Remove-KvmDisk cp-off -Path $qcow -Confirm:$false }
    }

    It '-WhatIf takes nothing' {
        $lines = Get-KvmWhatIfLine { Checkpoint-KvmVm cp-off -SnapshotName w1 -WhatIf }
        $lines | Should -Match "Create checkpoint 'w1'"
        Get-KvmVmSnapshot cp-off w1 -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
    }

    It 'reports a missing VM as ObjectNotFound' {
        Checkpoint-KvmVm nosuch -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId VmNotFound -Command Checkpoint-KvmVm -Category ObjectNotFound -TargetObject 'nosuch'
    }

    It 'has help' { Assert-KvmHelp Checkpoint-KvmVm | Out-Null }
}
