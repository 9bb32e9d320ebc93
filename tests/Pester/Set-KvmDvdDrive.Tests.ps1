#Requires -Version 7.4
# Set-KvmDvdDrive: insert and eject on a VM that is off (definition), argument checks, -WhatIf, errors.
# On a running VM (kvmps-vmm, jailed by default as root, and with KVMPS_VMM_JAIL=off): a root-only ISO is opened by
# management and passed open with media.change (docs/vmm.md "Passing open files"). A locked tray is covered against a
# scripted VMM in KvmPS.Management.Tests (DvdMediaTests).

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

Describe 'Set-KvmDvdDrive on a running VM' -ForEach @(
    @{ Jail = $null; Vm = 'sd-jailed'; Uid = '995' }   # the default: jailed as the kvmps user
    @{ Jail = 'off'; Vm = 'sd-unjailed'; Uid = '0' }
) {
    BeforeAll {
        $script:savedJail = $env:KVMPS_VMM_JAIL
        $env:KVMPS_VMM_JAIL = $Jail
        # The ISO: root's, 0600, in a root-only folder the jail does not hold.
        $private = Join-Path $env:KVMPS_HOME "iso-$Vm"
        New-Item -ItemType Directory -Path $private | Out-Null
        chmod 700 $private
        $script:iso = New-KvmTestIso (Join-Path $private 'root-only.iso')
        chmod 600 $iso
        New-KvmTestVm -Name $Vm | Out-Null
        Add-KvmDvdDrive $Vm
        $script:run = Start-KvmVm -Name $Vm -PassThru -Confirm:$false -ErrorAction Stop
    }
    AfterAll {
        Stop-KvmVm -Name $Vm -TurnOff -Confirm:$false -ErrorAction SilentlyContinue
        $env:KVMPS_VMM_JAIL = $script:savedJail
    }

    It 'runs its kvmps-vmm as uid <Uid>' {
        (Get-Content "/proc/$($run.ProcessId)/status" | Where-Object { $_ -like 'Uid:*' }).Split("`t")[1] | Should -Be $Uid
    }

    It 'inserts a root-only ISO into the running drive, which the VMM reports' {
        Set-KvmDvdDrive $Vm -Path $iso -ErrorAction Stop
        (Get-KvmVm $Vm).ProcessId | Should -Be $run.ProcessId
        (Get-KvmDvdDrive $Vm).Path | Should -Be $iso
        (Get-KvmTestLiveDevice $Vm | Where-Object Type -eq 'cdrom').Path | Should -Be $iso
    }

    It '-Eject empties the running drive' {
        Set-KvmDvdDrive $Vm -Eject -ErrorAction Stop
        (Get-KvmTestLiveDevice $Vm | Where-Object Type -eq 'cdrom').Path | Should -BeNullOrEmpty
        (Get-KvmDvdDrive $Vm).Path | Should -BeNullOrEmpty
    }
}
