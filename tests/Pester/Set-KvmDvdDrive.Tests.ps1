#Requires -Version 7.4
# Set-KvmDvdDrive: insert and eject on a VM that is off (definition), argument checks, -WhatIf, errors.
# The live path (media.change on a running VM, a locked tray) is covered against a scripted VMM in
# KvmPS.Management.Tests (DvdMediaTests) until the VMM's cdrom device is merged.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Join-Path $PSScriptRoot 'DvdTestHelpers.psm1') -Force
    $root = Initialize-KvmTest
    $script:one = New-KvmTestIso (Join-Path $root 'one.iso')
    $script:two = New-KvmTestIso (Join-Path $root 'two.iso')
    New-KvmTestVm -Name sd-a | Out-Null
    Add-KvmDvdDrive sd-a -Path $one
}

AfterAll { Complete-KvmTest }

Describe 'Set-KvmDvdDrive' {
    It 'inserts another ISO; -PassThru outputs the drive' {
        (Set-KvmDvdDrive sd-a -Path $two -PassThru).Path | Should -Be $two
    }

    It '-Eject empties the drive and keeps it' {
        Get-KvmVm sd-a | Set-KvmDvdDrive -Eject
        $drive = Get-KvmDvdDrive sd-a
        $drive.Path | Should -BeNullOrEmpty
        $drive.ControllerLocation | Should -Be 0
    }

    It 'needs exactly one of -Path and -Eject' {
        { Set-KvmDvdDrive sd-a -ErrorAction Stop } | Should -Throw '*-Path*-Eject*'
        { Set-KvmDvdDrive sd-a -Path $one -Eject -ErrorAction Stop } | Should -Throw '*-Path*-Eject*'
    }

    It 'refuses a drive the VM does not have' {
        Set-KvmDvdDrive sd-a -ControllerLocation 3 -Path $one -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId InvalidVmSetting -Command Set-KvmDvdDrive -Category InvalidArgument -TargetObject 'sd-a'
        "$($err[0])" | Should -Match 'no drive 3'
    }

    It '-Live refuses a VM that is off, changing nothing' {
        Set-KvmDvdDrive sd-a -Path $one -Live -ErrorVariable err -ErrorAction SilentlyContinue
        "$($err[0])" | Should -Match 'is Off'
        (Get-KvmDvdDrive sd-a).Path | Should -BeNullOrEmpty
    }

    It '-WhatIf changes nothing' {
        $lines = Get-KvmWhatIfLine { Set-KvmDvdDrive sd-a -Path $one -WhatIf }
        $lines | Should -Match 'one\.iso'
        (Get-KvmDvdDrive sd-a).Path | Should -BeNullOrEmpty
    }

    It 'has full help' {
        Assert-KvmHelp Set-KvmDvdDrive | Out-Null
    }
}
