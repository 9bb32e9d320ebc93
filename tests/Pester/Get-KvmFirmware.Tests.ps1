#Requires -Version 7.4
# Get-KvmFirmware: boot source, order and one-time device of firmware and kernel VMs.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    New-KvmTestVm -Name gf-kernel | Out-Null
    New-KvmVm -Definition @{ Name = 'gf-bios'; MemoryStartupBytes = 64MB; Boot = @{ FirmwarePath = 'seabios' }; Disks = @(@{ Path = 'root.raw'; SizeBytes = 1MB }); BootOrder = @('Disk', 'Network') } -Confirm:$false | Out-Null
}

AfterAll { Complete-KvmTest }

Describe 'Get-KvmFirmware' {
    It 'outputs the boot order and first boot device' {
        $fw = Get-KvmFirmware gf-bios
        $fw.BootOrder | Should -Be @('Disk', 'Network')
        $fw.FirstBootDevice | Should -Be 'Disk'
        $fw.BootOnce | Should -BeNullOrEmpty
        $fw.Boot | Should -Match 'seabios'
    }

    It 'shows a VM without a boot order, from the pipeline' {
        $fw = Get-KvmVm gf-kernel | Get-KvmFirmware
        $fw.BootOrder.Count | Should -Be 0
        ($fw | Out-String -Width 80) | Should -Match '\(boot disk\)'
    }

    It 'reports a missing VM as ObjectNotFound' {
        Get-KvmFirmware nosuch -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId VmNotFound -Command Get-KvmFirmware -Category ObjectNotFound -TargetObject 'nosuch'
    }

    It 'has full help' {
        Assert-KvmHelp Get-KvmFirmware | Out-Null
    }
}
