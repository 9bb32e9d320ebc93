#Requires -Version 7.4
# Set-KvmFirmware: boot order, first boot device, one-time device, bad input, -WhatIf.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    New-KvmTestVm -Name sf-kernel | Out-Null
    New-KvmVm -Definition @{ Name = 'sf-bios'; MemoryStartupBytes = 64MB; Boot = @{ FirmwarePath = 'seabios' }; Disks = @(@{ Path = 'root.raw'; SizeBytes = 1MB }) } -Confirm:$false | Out-Null
}

AfterAll { Complete-KvmTest }

Describe 'Set-KvmFirmware' {
    It 'sets the boot order; -PassThru outputs the firmware settings' {
        $fw = Set-KvmFirmware sf-bios -BootOrder Dvd, Disk -PassThru
        $fw.BootOrder | Should -Be @('Dvd', 'Disk')
        (Get-KvmFirmware sf-bios).BootOrder | Should -Be @('Dvd', 'Disk')
    }

    It '-FirstBootDevice moves a device to the front' {
        Get-KvmVm sf-bios | Set-KvmFirmware -FirstBootDevice Disk
        (Get-KvmFirmware sf-bios).BootOrder | Should -Be @('Disk', 'Dvd')
    }

    It '-BootOnce sets the next start''s device; -ClearBootOnce drops it' {
        Set-KvmFirmware sf-bios -BootOnce Network
        (Get-KvmFirmware sf-bios).BootOnce | Should -Be 'Network'
        Set-KvmFirmware sf-bios -ClearBootOnce
        (Get-KvmFirmware sf-bios).BootOnce | Should -BeNullOrEmpty
    }

    It 'an empty order goes back to the default' {
        Set-KvmFirmware sf-bios -BootOrder @()
        (Get-KvmFirmware sf-bios).BootOrder.Count | Should -Be 0
    }

    It 'refuses a VM that boots a kernel, naming why' {
        Set-KvmFirmware sf-kernel -BootOrder Dvd -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId InvalidVmSetting -Command Set-KvmFirmware -Category InvalidArgument -TargetObject 'sf-kernel'
        "$($err[0])" | Should -Match 'firmware boot only'
    }

    It 'refuses an unknown device and a call without a setting' {
        { Set-KvmFirmware sf-bios -BootOrder Floppy -ErrorAction Stop } | Should -Throw '*Floppy*'
        { Set-KvmFirmware sf-bios -ErrorAction Stop } | Should -Throw '*-BootOrder*'
    }

    It '-WhatIf changes nothing' {
        $lines = Get-KvmWhatIfLine { Set-KvmFirmware sf-bios -BootOrder Network -WhatIf }
        $lines | Should -Match 'boot order Network'
        (Get-KvmFirmware sf-bios).BootOrder.Count | Should -Be 0
    }

    It 'has full help' {
        Assert-KvmHelp Set-KvmFirmware | Out-Null
    }
}
