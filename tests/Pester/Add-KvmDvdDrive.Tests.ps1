#Requires -Version 7.4
# Add-KvmDvdDrive: a drive with an ISO or empty, pool volumes, the ISO checks, pipeline, -WhatIf, errors.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Join-Path $PSScriptRoot 'DvdTestHelpers.psm1') -Force
    $root = Initialize-KvmTest
    $script:iso = New-KvmTestIso (Join-Path $root 'install.iso')
    $script:notIso = New-KvmTestIso (Join-Path $root 'disk.img') -NotIso
    New-KvmTestVm -Name dvd-a | Out-Null
    New-KvmTestVm -Name dvd-b | Out-Null
}

AfterAll { Complete-KvmTest }

Describe 'Add-KvmDvdDrive' {
    It 'adds a drive holding the ISO; -PassThru outputs the drive' {
        $drive = Add-KvmDvdDrive dvd-a -Path $iso -PassThru
        $drive.VMName | Should -Be 'dvd-a'
        $drive.ControllerLocation | Should -Be 0
        $drive.Path | Should -Be $iso
        $drive.PSObject.TypeNames[0] | Should -Be 'KvmPS.PowerShell.KvmDvdDrive'
    }

    It 'adds an empty drive without -Path, and takes VMs from the pipeline' {
        Get-KvmVm dvd-b | Add-KvmDvdDrive
        [pscustomobject]@{ Name = 'dvd-b' } | Add-KvmDvdDrive -Path $iso
        (Get-KvmDvdDrive dvd-b).Path | Should -Be @($null, $iso)
    }

    It 'refuses a file that is not ISO 9660 naming it, and adds nothing' {
        Add-KvmDvdDrive dvd-a -Path $notIso -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId InvalidIsoImage -Command Add-KvmDvdDrive -Category InvalidData -TargetObject $notIso
        "$($err[0])" | Should -Match 'is not an ISO 9660 image'
        @(Get-KvmDvdDrive dvd-a).Count | Should -Be 1
    }

    It 'refuses a missing ISO naming it' {
        Add-KvmDvdDrive dvd-a -Path /tmp/nosuch-kvmps.iso -ErrorVariable err -ErrorAction SilentlyContinue
        "$($err[0])" | Should -Match "nosuch-kvmps.iso' does not exist"
    }

    It '-WhatIf adds nothing' {
        $lines = Get-KvmWhatIfLine { Add-KvmDvdDrive dvd-a -Path $iso -WhatIf }
        $lines | Should -Match 'target "dvd-a"'
        @(Get-KvmDvdDrive dvd-a).Count | Should -Be 1
    }

    It 'reports a missing VM as ObjectNotFound' {
        Add-KvmDvdDrive nosuch -Path $iso -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId VmNotFound -Command Add-KvmDvdDrive -Category ObjectNotFound -TargetObject 'nosuch'
    }

    It 'completes ISO paths and VM names' {
        Push-Location (Split-Path $iso)
        try { Get-KvmCompletion 'Add-KvmDvdDrive -Name dvd-a -Path inst' | Should -Be @('install.iso') } finally { Pop-Location }
        Get-KvmCompletion 'Add-KvmDvdDrive dvd-' | Should -Be @('dvd-a', 'dvd-b')
    }

    It 'has full help' {
        Assert-KvmHelp Add-KvmDvdDrive | Out-Null
    }
}
