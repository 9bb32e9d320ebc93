#Requires -Version 7.4
# Get-KvmDvdDrive: every drive, one by location, pipeline, the view.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Join-Path $PSScriptRoot 'DvdTestHelpers.psm1') -Force
    $root = Initialize-KvmTest
    $script:iso = New-KvmTestIso (Join-Path $root 'a.iso')
    New-KvmTestVm -Name gd-a | Out-Null
    Add-KvmDvdDrive gd-a -Path $iso
    Add-KvmDvdDrive gd-a
}

AfterAll { Complete-KvmTest }

Describe 'Get-KvmDvdDrive' {
    It 'lists every drive with its location and medium' {
        $drives = Get-KvmDvdDrive gd-a
        $drives.ControllerLocation | Should -Be @(0, 1)
        $drives[0].FullPath | Should -Be $iso
        $drives[1].Path | Should -BeNullOrEmpty
    }

    It '-ControllerLocation selects one; VMs come from the pipeline' {
        (Get-KvmVm gd-a | Get-KvmDvdDrive -ControllerLocation 1).ControllerLocation | Should -Be 1
    }

    It 'shows an empty drive as (empty) in its table' {
        $text = Get-KvmDvdDrive gd-a | Out-String -Width 80
        $text | Should -Match '\(empty\)'
        $text | Should -Match 'a\.iso'
    }

    It 'reports a missing VM as ObjectNotFound' {
        Get-KvmDvdDrive nosuch -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId VmNotFound -Command Get-KvmDvdDrive -Category ObjectNotFound -TargetObject 'nosuch'
    }

    It 'has full help' {
        Assert-KvmHelp Get-KvmDvdDrive | Out-Null
    }
}
