#Requires -Version 7.4
# Set-KvmHostSriov (and Get-KvmHostPciDevice's PF/VF view) against a fake sysfs tree: $env:KVMPS_SYSFS_ROOT points
# the cmdlets at it. Plain files stand in for the kernel's attributes, so a write is seen as the file's new content
# (the kernel's side effects, VFs appearing, are emulated in the Management unit tests' fake kernel instead).

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null

    function New-FakeFunction([string] $Root, [string] $Address, [string] $Class, [string] $Driver, [int] $TotalVfs = -1, [string] $Parent) {
        $dir = Join-Path $Root "bus/pci/devices/$Address"
        New-Item -ItemType Directory -Path $dir -Force | Out-Null
        Set-Content -Path (Join-Path $dir 'vendor') -Value '0x8086'
        Set-Content -Path (Join-Path $dir 'device') -Value '0x10fb'
        Set-Content -Path (Join-Path $dir 'class') -Value $Class
        if ($Driver) {
            $drv = Join-Path $Root "bus/pci/drivers/$Driver"
            New-Item -ItemType Directory -Path $drv -Force | Out-Null
            New-Item -ItemType SymbolicLink -Path (Join-Path $dir 'driver') -Target $drv | Out-Null
        }
        if ($TotalVfs -ge 0) {
            Set-Content -Path (Join-Path $dir 'sriov_totalvfs') -Value $TotalVfs
            Set-Content -Path (Join-Path $dir 'sriov_numvfs') -Value 0
        }
        if ($Parent) {
            New-Item -ItemType SymbolicLink -Path (Join-Path $dir 'physfn') -Target (Join-Path $Root "bus/pci/devices/$Parent") | Out-Null
        }
    }

    $script:pf = '0000:03:00.0'
    $script:vf = '0000:04:00.0'
    $script:plain = '0000:00:1f.0'
}

AfterAll { Complete-KvmTest }

Describe 'Set-KvmHostSriov' {
    BeforeEach {
        $script:root = Join-Path ([IO.Path]::GetTempPath()) ("kvmps-sysfs-" + [Guid]::NewGuid().ToString('N').Substring(0, 12))
        New-FakeFunction $root $pf '0x020000' 'ixgbe' -TotalVfs 8
        New-FakeFunction $root $plain '0x060100' 'lpc_ich'
        $script:numvfs = Join-Path $root "bus/pci/devices/$pf/sriov_numvfs"
        $env:KVMPS_SYSFS_ROOT = $root
    }

    AfterEach {
        Remove-Item Env:KVMPS_SYSFS_ROOT -ErrorAction SilentlyContinue
        Remove-Item -Recurse -Force $root -ErrorAction SilentlyContinue
    }

    It 'writes the VF count to sriov_numvfs and returns the physical function with -PassThru' {
        $out = Set-KvmHostSriov -Device $pf -VfCount 4 -PassThru
        (Get-Content $numvfs).Trim() | Should -Be '4'
        @($out)[0].Address.ToString() | Should -Be $pf
        @($out)[0].SriovNumVfs | Should -Be 4
        @($out)[0].SriovTotalVfs | Should -Be 8
        Set-KvmHostSriov $pf 2 | Should -BeNullOrEmpty -Because 'without -PassThru there is no output'
        (Get-Content $numvfs).Trim() | Should -Be '2'
    }

    It 'takes the address from the pipeline by property name' {
        Get-KvmHostPciDevice -Address $pf | Set-KvmHostSriov -VfCount 3
        (Get-Content $numvfs).Trim() | Should -Be '3'
    }

    It 'changes nothing with -WhatIf' {
        Set-Content -Path $numvfs -Value 4
        Set-KvmHostSriov -Device $pf -VfCount 2 -WhatIf | Should -BeNullOrEmpty
        (Get-Content $numvfs).Trim() | Should -Be '4'
    }

    It 'refuses more VFs than sriov_totalvfs, naming both' {
        Set-KvmHostSriov -Device $pf -VfCount 9 -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId HostSriovRefused -Command Set-KvmHostSriov -Category InvalidArgument -TargetObject $pf
        $err[0].Exception.Message | Should -Match "$pf.*asks for 9 virtual functions but it supports at most 8"
        (Get-Content $numvfs).Trim() | Should -Be '0'
    }

    It 'refuses a device that is not SR-IOV capable' {
        Set-KvmHostSriov -Device $plain -VfCount 1 -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId HostSriovRefused -Command Set-KvmHostSriov -Category InvalidArgument -TargetObject $plain
        $err[0].Exception.Message | Should -Match 'not SR-IOV capable'
    }

    It 'reports a missing device as ObjectNotFound naming it' {
        Set-KvmHostSriov -Device '0000:0a:00.0' -VfCount 1 -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId HostDeviceNotFound -Command Set-KvmHostSriov -Category ObjectNotFound -TargetObject '0000:0a:00.0'
    }

    It 'refuses an address that is not one' {
        { Set-KvmHostSriov -Device 'nonsense' -VfCount 1 -ErrorAction Stop } | Should -Throw '*nonsense*'
    }

    It 'refuses a negative count at binding' {
        { Set-KvmHostSriov -Device $pf -VfCount -1 -ErrorAction Stop } | Should -Throw
        (Get-Content $numvfs).Trim() | Should -Be '0'
    }

    It 'has full help' {
        Assert-KvmHelp Set-KvmHostSriov | Out-Null
        (Get-Help Set-KvmHostSriov -Full | Out-String) | Should -Match 'NOT been run on real hardware'
    }
}

Describe 'Get-KvmHostPciDevice with SR-IOV' {
    BeforeAll {
        $script:root = Join-Path ([IO.Path]::GetTempPath()) ("kvmps-sysfs-" + [Guid]::NewGuid().ToString('N').Substring(0, 12))
        New-FakeFunction $root $pf '0x020000' 'ixgbe' -TotalVfs 8
        Set-Content -Path (Join-Path $root "bus/pci/devices/$pf/sriov_numvfs") -Value 2
        New-FakeFunction $root $vf '0x020000' 'ixgbevf' -Parent $pf
        New-FakeFunction $root '0000:04:00.1' '0x020000' 'vfio-pci' -Parent $pf
        New-FakeFunction $root $plain '0x060100' 'lpc_ich'
        $env:KVMPS_SYSFS_ROOT = $root
    }

    AfterAll {
        Remove-Item Env:KVMPS_SYSFS_ROOT -ErrorAction SilentlyContinue
        Remove-Item -Recurse -Force $root -ErrorAction SilentlyContinue
    }

    It 'reads the fake tree: a PF with its VF counts, VFs with their parent' {
        $devices = @(Get-KvmHostPciDevice)
        ($devices | ForEach-Object { $_.Address.ToString() }) | Should -Be @($plain, $pf, $vf, '0000:04:00.1')
        $physical = $devices | Where-Object { $_.Address.ToString() -eq $pf }
        $physical.SriovNumVfs | Should -Be 2
        $physical.SriovTotalVfs | Should -Be 8
        $vfs = @($devices | Where-Object IsVirtualFunction)
        $vfs.Count | Should -Be 2
        $vfs | ForEach-Object { $_.PhysicalFunction.ToString() | Should -Be $pf }
    }

    It 'shows VF counts and parents in the table, in 80 columns' {
        $lines = Assert-KvmView @(Get-KvmHostPciDevice) -View Table
        ($lines | Where-Object { $_ -match '^0000:03:00\.0' }) | Should -Match '2/8 VFs'
        ($lines | Where-Object { $_ -match '^0000:04:00\.0' }) | Should -Match 'VF of 03:00\.0'
        ($lines | Where-Object { $_ -match '^0000:04:00\.1' }) | Should -Match 'vfio-pci\s.*VF of 03:00\.0'
    }

    It 'filters VFs by driver' {
        (Get-KvmHostPciDevice -Driver 'ixgbe*' | ForEach-Object { $_.Address.ToString() }) | Should -Be @($pf, $vf)
    }
}
