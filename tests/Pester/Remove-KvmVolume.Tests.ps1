#Requires -Version 7.4
# Remove-KvmVolume: deletes a volume, refuses one a VM uses (naming it) or one backing another volume, -WhatIf, help.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
}

AfterAll { Complete-KvmTest }

Describe 'Remove-KvmVolume' {
    It 'deletes a volume' {
        $volume = New-KvmVolume gone.raw 1MB
        Remove-KvmVolume gone.raw -Confirm:$false
        Test-Path $volume.Path | Should -BeFalse
    }

    It 'refuses a volume a VM uses, naming the VM' {
        New-KvmVolume used.qcow2 4MB | Out-Null
        New-KvmVm -Definition @{ Name = 'user1'; MemoryStartupBytes = 64MB; Disks = @(@{ Volume = 'used.qcow2' }) } | Out-Null
        Remove-KvmVolume used.qcow2 -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId StorageVolumeInUse -Command Remove-KvmVolume -Category ResourceBusy -TargetObject 'used.qcow2'
        "$($err[0])" | Should -Match "'user1'"
        Get-KvmVolume used.qcow2 | Should -Not -BeNullOrEmpty
    }

    It 'refuses a volume another volume is backed by' {
        New-KvmVolume base.qcow2 4MB | Out-Null
        New-KvmVolume top.qcow2 -BackingVolume base.qcow2 | Out-Null
        Remove-KvmVolume base.qcow2 -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
        "$($err[0])" | Should -Match "top.qcow2"
    }

    It '-WhatIf deletes nothing; volumes come from the pipeline with their pool' {
        New-KvmVolume piped.raw 1MB | Out-Null
        $lines = Get-KvmWhatIfLine { Get-KvmVolume piped.raw | Remove-KvmVolume -WhatIf }
        $lines | Should -Match 'piped.raw'
        (Get-KvmVolume piped.raw | Remove-KvmVolume -Confirm:$false -PassThru).Name | Should -Be 'piped.raw'
        Get-KvmVolume piped.raw -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
    }

    It 'has full help' {
        Assert-KvmHelp Remove-KvmVolume | Out-Null
    }
}
