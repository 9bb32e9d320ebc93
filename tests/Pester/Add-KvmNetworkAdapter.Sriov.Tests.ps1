#Requires -Version 7.4
# Add-KvmNetworkAdapter -SriovVf / -VlanId: an SR-IOV VF as a VM's network adapter, checked against a fake sysfs tree
# ($env:KVMPS_SYSFS_ROOT): a PF with one VF (physfn/virtfn0 links, each in its own IOMMU group) and a plain device.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    New-KvmTestVm -Name sr-a | Out-Null

    function New-FakeFunction([string] $Root, [string] $Address, [string] $Class, [string] $Driver, [int] $Group) {
        $dir = Join-Path $Root "bus/pci/devices/$Address"
        New-Item -ItemType Directory -Path $dir -Force | Out-Null
        Set-Content -Path (Join-Path $dir 'vendor') -Value '0x8086'
        Set-Content -Path (Join-Path $dir 'device') -Value '0x10ed'
        Set-Content -Path (Join-Path $dir 'class') -Value $Class
        $drv = Join-Path $Root "bus/pci/drivers/$Driver"
        New-Item -ItemType Directory -Path $drv -Force | Out-Null
        New-Item -ItemType SymbolicLink -Path (Join-Path $dir 'driver') -Target $drv | Out-Null
        $groupDir = Join-Path $Root "kernel/iommu_groups/$Group"
        New-Item -ItemType Directory -Path (Join-Path $groupDir 'devices') -Force | Out-Null
        New-Item -ItemType SymbolicLink -Path (Join-Path $groupDir "devices/$Address") -Target $dir | Out-Null
        New-Item -ItemType SymbolicLink -Path (Join-Path $dir 'iommu_group') -Target $groupDir | Out-Null
        $dir
    }

    $script:pf = '0000:03:00.0'
    $script:vf = '0000:04:00.0'
    $script:root = Join-Path ([IO.Path]::GetTempPath()) ("kvmps-sysfs-" + [Guid]::NewGuid().ToString('N').Substring(0, 12))
    $pfDir = New-FakeFunction $root $pf '0x020000' 'ixgbe' 7
    Set-Content -Path (Join-Path $pfDir 'sriov_totalvfs') -Value 8
    Set-Content -Path (Join-Path $pfDir 'sriov_numvfs') -Value 1
    New-Item -ItemType Directory -Path (Join-Path $pfDir 'net/enp3s0f0') -Force | Out-Null
    $vfDir = New-FakeFunction $root $vf '0x020000' 'ixgbevf' 100
    New-Item -ItemType SymbolicLink -Path (Join-Path $vfDir 'physfn') -Target $pfDir | Out-Null
    New-Item -ItemType SymbolicLink -Path (Join-Path $pfDir 'virtfn0') -Target $vfDir | Out-Null
    $env:KVMPS_SYSFS_ROOT = $root
}

AfterAll {
    Remove-Item Env:KVMPS_SYSFS_ROOT -ErrorAction SilentlyContinue
    Remove-Item -Recurse -Force $root -ErrorAction SilentlyContinue
    Complete-KvmTest
}

Describe 'Add-KvmNetworkAdapter -SriovVf' {
    It 'adds the VF as an adapter with its VLAN, warning that it is bound to vfio-pci only at start' {
        Add-KvmNetworkAdapter sr-a -SriovVf $vf -VlanId 100 -MacAddress 52:54:00:5a:00:01 -WarningVariable warn -WarningAction SilentlyContinue
        "$warn" | Should -Match "bound to ixgbevf, not vfio-pci"
        $nic = @(Get-KvmVmNetworkAdapter sr-a)
        $nic.Count | Should -Be 1
        $nic[0].SriovVf.ToString() | Should -Be $vf
        $nic[0].VlanId | Should -Be 100
        $nic[0].MacAddress.ToString() | Should -Be '52:54:00:5a:00:01'
        $nic[0].TapName | Should -BeNullOrEmpty
    }

    It 'refuses the same VF twice, naming it, and keeps one adapter' {
        Add-KvmNetworkAdapter sr-a -SriovVf $vf -WarningAction SilentlyContinue -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId DeviceAlreadyAttached -Command Add-KvmNetworkAdapter -Category ResourceExists -TargetObject $vf
        @(Get-KvmVmNetworkAdapter sr-a).Count | Should -Be 1
    }

    It 'refuses a physical function: a network adapter takes a VF' {
        Add-KvmNetworkAdapter sr-a -SriovVf $pf -WarningAction SilentlyContinue -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId PciDeviceUnusable -Command Add-KvmNetworkAdapter -Category InvalidArgument -TargetObject $pf
        "$($err[0])" | Should -Match 'not an SR-IOV virtual function'
        @(Get-KvmVmNetworkAdapter sr-a).Count | Should -Be 1
    }

    It 'refuses -VlanId without -SriovVf, and a VLAN id out of range' {
        { Add-KvmNetworkAdapter sr-a -TapName tap9 -VlanId 10 -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidValue,KvmPS.Commands.AddKvmNetworkAdapterCommand'
        { Add-KvmNetworkAdapter sr-a -SriovVf $vf -VlanId 4095 -ErrorAction Stop } | Should -Throw -ErrorId 'ParameterArgumentValidationError,KvmPS.Commands.AddKvmNetworkAdapterCommand'
        { Add-KvmNetworkAdapter sr-a -SriovVf $vf -TapName tap9 -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidValue,KvmPS.Commands.AddKvmNetworkAdapterCommand'
        @(Get-KvmVmNetworkAdapter sr-a).Count | Should -Be 1
    }

    It 'changes nothing with -WhatIf' {
        Remove-KvmNetworkAdapter sr-a -MacAddress 52:54:00:5a:00:01
        Add-KvmNetworkAdapter sr-a -SriovVf $vf -WhatIf -WarningAction SilentlyContinue
        @(Get-KvmVmNetworkAdapter sr-a).Count | Should -Be 0
    }

    It 'documents -SriovVf and -VlanId' {
        $help = Get-Help Add-KvmNetworkAdapter -Full
        @($help.parameters.parameter.name) | Should -Contain 'SriovVf'
        @($help.parameters.parameter.name) | Should -Contain 'VlanId'
        ($help.description | Out-String) | Should -Match 'not run on SR-IOV hardware'
    }
}

Describe 'HostSriov in manifests (Invoke/Test/Get-KvmDesiredState)' {
    BeforeAll {
        $script:manifest = Join-Path $TestDrive 'sriov.psd1'
        Set-Content -Path $manifest -Value "@{ HostSriov = @{ '$pf' = 3 } }"
        $script:numvfs = Join-Path $root "bus/pci/devices/$pf/sriov_numvfs"
    }

    It 'reports the VF count as drift and shows the PF in Get-KvmDesiredState' {
        Test-KvmDesiredState $manifest | Should -BeFalse
        $pfState = @(Get-KvmDesiredState $manifest | Where-Object { $_.Kind -eq 'SriovPhysicalFunction' })
        $pfState.Count | Should -Be 1
        $pfState[0].Name | Should -Be $pf
        $pfState[0].State | Should -Be '1 VFs'
        $pfState[0].InDesiredState | Should -BeFalse
        "$($pfState[0].Drifts[0])" | Should -Be "HostSriov.$($pf).VfCount: expected 3, actual 1"
    }

    It 'says what it would do with -WhatIf and writes nothing' {
        $lines = @(Get-KvmWhatIfLine { Invoke-KvmDesiredState -Path $manifest -WhatIf })
        $lines | Should -Contain "Performing the operation `"Set SR-IOV VF count (VfCount 1 -> 3)`" on target `"$pf`"."
        (Get-Content $numvfs).Trim() | Should -Be '1'
    }

    It 'sets the count through sriov_numvfs (through 0) and is then in the desired state' {
        $results = @(Invoke-KvmDesiredState -Path $manifest -Confirm:$false)
        $results.Count | Should -Be 1
        $results[0].Action.Kind.ToString() | Should -Be 'SetSriovVfCount'
        $results[0].Status.ToString() | Should -Be 'Done'
        (Get-Content $numvfs).Trim() | Should -Be '3'
        Test-KvmDesiredState $manifest | Should -BeTrue
    }

    It 'refuses a PF asked for more VFs than it supports, naming the entry, and writes nothing' {
        Set-Content -Path $manifest -Value "@{`n HostSriov = @{ '$pf' = 9 } }"
        $e = { Invoke-KvmDesiredState -Path $manifest -Confirm:$false -ErrorAction Stop } | Should -Throw -PassThru
        "$e" | Should -Match ('sriov\.psd1:2:\d+: ' + [regex]::Escape("HostSriov['$pf']: ") + '.*supports at most 8')
        (Get-Content $numvfs).Trim() | Should -Be '3'
    }
}
