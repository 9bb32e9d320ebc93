#Requires -Version 7.4
# Get-KvmVolume: volumes with format, capacity, allocation and the VMs using them; wildcards, errors, completion, view, help.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    $script:base = Join-Path ([IO.Path]::GetTempPath()) ('kpool-' + [guid]::NewGuid().ToString('N').Substring(0, 8))
    New-Item -ItemType Directory -Path $base | Out-Null
    & chmod 700 $base
    New-KvmStoragePool lab (Join-Path $base 'lab') -CreatePath | Out-Null
    New-KvmVolume -Pool lab -Name a.raw -SizeBytes 2MB | Out-Null
    New-KvmVolume -Pool lab -Name b.qcow2 -SizeBytes 16MB | Out-Null
    New-KvmVm -Definition @{ Name = 'voluser'; MemoryStartupBytes = 64MB; Disks = @(@{ Pool = 'lab'; Volume = 'b.qcow2' }) } | Out-Null
}

AfterAll {
    Complete-KvmTest
    Remove-Item -LiteralPath $base -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'Get-KvmVolume' {
    It 'lists the volumes of a pool with their format, size and users' {
        $volumes = Get-KvmVolume -Pool lab
        $volumes.Name | Should -Be @('a.raw', 'b.qcow2')
        $volumes[0].Format | Should -Be 'Raw'
        $volumes[1].Format | Should -Be 'Qcow2'
        $volumes[1].CapacityBytes | Should -Be 16MB
        $volumes[1].UsedBy | Should -Be @('voluser')
        $volumes[0].UsedBy | Should -BeNullOrEmpty
    }

    It 'selects by wildcard and takes the pool from the pipeline by property name' {
        ([pscustomobject]@{ Pool = 'lab' } | Get-KvmVolume -Name *.qcow2).Name | Should -Be 'b.qcow2'
    }

    It 'names a volume that does not exist' {
        Get-KvmVolume -Pool lab nope.raw -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        Assert-KvmError $err -ErrorId StorageVolumeNotFound -Command Get-KvmVolume -Category ObjectNotFound -TargetObject 'nope.raw'
    }

    It 'completes volume names of the pool given' {
        Get-KvmCompletion 'Get-KvmVolume -Pool lab b' | Should -Be @('b.qcow2')
    }

    It 'shows volumes as a table that fits 80 columns' {
        $lines = Assert-KvmView (Get-KvmVolume -Pool lab) -View Table
        $lines[0] | Should -Match '^Pool\s+Name\s+Format\s+SizeMB\s+AllocMB\s+UsedBy'
        $lines.Count | Should -Be 4
    }

    It 'has full help' {
        Assert-KvmHelp Get-KvmVolume | Out-Null
    }
}
