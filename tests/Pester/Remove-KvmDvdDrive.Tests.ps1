#Requires -Version 7.4
# Remove-KvmDvdDrive: by location, the only drive, ambiguity, -WhatIf, errors.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Join-Path $PSScriptRoot 'DvdTestHelpers.psm1') -Force
    $root = Initialize-KvmTest
    $script:iso = New-KvmTestIso (Join-Path $root 'r.iso')
    New-KvmTestVm -Name rdv-a | Out-Null
    Add-KvmDvdDrive rdv-a -Path $iso
    Add-KvmDvdDrive rdv-a
}

AfterAll { Complete-KvmTest }

Describe 'Remove-KvmDvdDrive' {
    It 'asks which drive when the VM has several' {
        Remove-KvmDvdDrive rdv-a -ErrorVariable err -ErrorAction SilentlyContinue
        "$($err[0])" | Should -Match '-ControllerLocation'
        @(Get-KvmDvdDrive rdv-a).Count | Should -Be 2
    }

    It '-WhatIf removes nothing' {
        $lines = Get-KvmWhatIfLine { Remove-KvmDvdDrive rdv-a -ControllerLocation 0 -WhatIf }
        $lines | Should -Match 'r\.iso'
        @(Get-KvmDvdDrive rdv-a).Count | Should -Be 2
    }

    It 'removes the drive at a location, keeps the ISO; -PassThru outputs the VM' {
        $vm = Remove-KvmDvdDrive rdv-a -ControllerLocation 0 -PassThru
        $vm.Name | Should -Be 'rdv-a'
        (Get-KvmDvdDrive rdv-a).Path | Should -BeNullOrEmpty
        Test-Path $iso | Should -BeTrue
    }

    It 'removes the only drive without a location' {
        Get-KvmVm rdv-a | Remove-KvmDvdDrive
        Get-KvmDvdDrive rdv-a | Should -BeNullOrEmpty
    }

    It 'refuses a VM without drives' {
        Remove-KvmDvdDrive rdv-a -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId InvalidVmSetting -Command Remove-KvmDvdDrive -Category InvalidArgument -TargetObject 'rdv-a'
        "$($err[0])" | Should -Match 'has no DVD drive'
    }

    It 'has full help' {
        Assert-KvmHelp Remove-KvmDvdDrive | Out-Null
    }
}
