#Requires -Version 7.4
# New-KvmVolume: raw and qcow2 volumes, backing volumes, bad names refused with the name, never overwrites, -WhatIf, help.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
}

AfterAll { Complete-KvmTest }

Describe 'New-KvmVolume' {
    It 'creates a sparse raw volume in the default pool' {
        $volume = New-KvmVolume data.raw 4MB
        $volume | Should -BeOfType ([KvmPS.Management.Pools.StorageVolumeInfo])
        $volume.Pool | Should -Be 'default'
        $volume.Format | Should -Be 'Raw'
        $volume.CapacityBytes | Should -Be 4MB
        $volume.AllocationBytes | Should -BeLessThan 4MB
        $volume.Path | Should -Be (Join-Path $env:KVMPS_HOME 'pools/default/data.raw')
    }

    It 'creates a qcow2 overlay of a backing volume with its size (-Size alias)' {
        New-KvmVolume -Name base.qcow2 -Size 8MB | Out-Null
        $overlay = New-KvmVolume -Name web1.qcow2 -BackingVolume base.qcow2
        $overlay.Format | Should -Be 'Qcow2'
        $overlay.CapacityBytes | Should -Be 8MB
        $overlay.BackingVolume | Should -Be 'base.qcow2'
    }

    It 'refuses a bad name, naming it, and makes nothing' -ForEach @(
        @{ Name = 'a/b' }, @{ Name = '..' }, @{ Name = '.hidden' }
    ) {
        New-KvmVolume -Name $Name -SizeBytes 1MB -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        Assert-KvmError $err -ErrorId InvalidStorageVolumeSetting -Command New-KvmVolume -Category InvalidArgument -TargetObject $Name
        "$($err[0])" | Should -Match ([regex]::Escape($Name))
    }

    It 'never overwrites a volume' {
        New-KvmVolume data.raw 1MB -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId StorageVolumeExists -Command New-KvmVolume -Category ResourceExists -TargetObject 'data.raw'
        (Get-KvmVolume data.raw).CapacityBytes | Should -Be 4MB
    }

    It 'names a pool that does not exist' {
        New-KvmVolume x.raw 1MB -Pool nope -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId StoragePoolNotFound -Command New-KvmVolume -Category ObjectNotFound -TargetObject 'nope'
    }

    It '-WhatIf creates nothing' {
        $lines = Get-KvmWhatIfLine { New-KvmVolume whatif.qcow2 2MB -WhatIf }
        $lines | Should -Match 'Qcow2'
        Get-KvmVolume whatif.qcow2 -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
    }

    It 'New-KvmDiskImage -Pool creates the same kind of volume' {
        $image = New-KvmDiskImage -Pool default -Path img.qcow2 -SizeBytes 2MB
        $image.Path | Should -Be (Join-Path $env:KVMPS_HOME 'pools/default/img.qcow2')
        (Get-KvmVolume img.qcow2).Format | Should -Be 'Qcow2'
    }

    It 'has full help' {
        Assert-KvmHelp New-KvmVolume | Out-Null
    }
}
