#Requires -Version 7.4
# Remove-KvmStoragePool: forgets a pool (files stay), refuses one VMs use (naming them) and the default pool, -WhatIf, help.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    $script:base = Join-Path ([IO.Path]::GetTempPath()) ('kpool-' + [guid]::NewGuid().ToString('N').Substring(0, 8))
    New-Item -ItemType Directory -Path $base | Out-Null
    & chmod 700 $base
}

AfterAll {
    Remove-Item -LiteralPath $base -Recurse -Force -ErrorAction SilentlyContinue
    Complete-KvmTest
}

Describe 'Remove-KvmStoragePool' {
    It 'forgets the pool and keeps its folder and volumes' {
        $folder = Join-Path $base 'a'
        New-KvmStoragePool a $folder -CreatePath | Out-Null
        New-KvmVolume -Pool a -Name keep.raw -SizeBytes 1MB | Out-Null
        Remove-KvmStoragePool a -Confirm:$false
        Get-KvmStoragePool a -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        Test-Path (Join-Path $folder 'keep.raw') | Should -BeTrue
    }

    It 'refuses a pool whose volumes a VM uses, naming the VM' {
        New-KvmStoragePool used (Join-Path $base 'used') -CreatePath | Out-Null
        New-KvmVm -Definition @{ Name = 'pooluser'; MemoryStartupBytes = 64MB; Disks = @(@{ Pool = 'used'; Volume = 'd.raw'; SizeBytes = 1MB }) } | Out-Null
        Remove-KvmStoragePool used -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId StoragePoolInUse -Command Remove-KvmStoragePool -Category ResourceBusy -TargetObject 'used'
        "$($err[0])" | Should -Match "'pooluser'"
        Get-KvmStoragePool used | Should -Not -BeNullOrEmpty
    }

    It 'never removes the default pool' {
        Remove-KvmStoragePool default -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId StoragePoolInUse -Command Remove-KvmStoragePool -Category ResourceBusy -TargetObject 'default'
    }

    It '-WhatIf removes nothing; pools come from the pipeline by name' {
        New-KvmStoragePool w (Join-Path $base 'w') -CreatePath | Out-Null
        $lines = Get-KvmWhatIfLine { Get-KvmStoragePool w | Remove-KvmStoragePool -WhatIf }
        $lines | Should -Match "Remove storage pool"
        Get-KvmStoragePool w | Should -Not -BeNullOrEmpty
        (Get-KvmStoragePool w | Remove-KvmStoragePool -Confirm:$false -PassThru).Name | Should -Be 'w'
    }

    It 'has full help' {
        Assert-KvmHelp Remove-KvmStoragePool | Out-Null
    }
}
