#Requires -Version 7.4
# Remove-KvmPciPassthrough: taking functions away from a VM; pipeline, -PassThru, -WhatIf, errors naming the address.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    # A stored definition may name PCI functions the host cannot give now (they are checked when added and at start).
    foreach ($n in 'rp-a', 'rp-b') {
        New-KvmVm -Definition @{ Name = $n; MemoryStartupBytes = 64MB; PciPassthrough = @('0000:00:01.0', '0000:00:02.0', '0000:00:03.0') } | Out-Null
    }
}

AfterAll { Complete-KvmTest }

Describe 'Remove-KvmPciPassthrough' {
    It 'removes the function given, outputting nothing' {
        Remove-KvmPciPassthrough rp-a -Address '0000:00:01.0' | Should -BeNullOrEmpty
        (Get-KvmVm rp-a).PciPassthrough | Should -Be @('0000:00:02.0', '0000:00:03.0')
    }

    It 'removes several functions; -PassThru outputs the VM' {
        $vm = Remove-KvmPciPassthrough rp-a -Address '0000:00:02.0', '0000:00:03.0' -PassThru
        $vm.Name | Should -Be 'rp-a'
        $vm.PciPassthrough | Should -BeNullOrEmpty
    }

    It 'takes VM objects by value and names and addresses by property name' {
        Get-KvmVm rp-b | Remove-KvmPciPassthrough -Address '0000:00:01.0'
        [pscustomobject]@{ VMName = 'rp-b'; PciAddress = '0000:00:02.0' } | Remove-KvmPciPassthrough
        (Get-KvmVm rp-b).PciPassthrough | Should -Be @('0000:00:03.0')
    }

    It 'removes a vfio-user device by socket; a socket the VM lacks is an error naming it' {
        New-KvmVm -Definition @{ Name = 'vu-rp'; MemoryStartupBytes = 64MB; VfioUserDevices = @('/run/a.sock', '/run/b.sock') } | Out-Null
        Remove-KvmPciPassthrough vu-rp -VfioUserSocket '/run/a.sock'
        (Get-KvmVm vu-rp).VfioUserDevices | Should -Be @('/run/b.sock')
        Remove-KvmPciPassthrough vu-rp -VfioUserSocket '/run/zzz.sock' -ErrorVariable err -ErrorAction SilentlyContinue
        $err.Count | Should -Be 1
        "$($err[0])" | Should -Match "no vfio-user device '/run/zzz.sock'"
        Get-KvmCompletion 'Remove-KvmPciPassthrough vu-rp -VfioUserSocket ' | Should -Be @('/run/b.sock')
    }

    It '-WhatIf removes nothing' {
        $lines = Get-KvmWhatIfLine { Remove-KvmPciPassthrough rp-b -Address '0000:00:03.0' -WhatIf }
        $lines | Should -Match 'target "rp-b"'
        $lines | Should -Match '0000:00:03\.0'
        (Get-KvmVm rp-b).PciPassthrough | Should -Be @('0000:00:03.0')
    }

    It 'reports a function the VM does not have as ObjectNotFound naming it' {
        Remove-KvmPciPassthrough rp-b -Address '0000:00:07.0' -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId DeviceNotFound -Command Remove-KvmPciPassthrough -Category ObjectNotFound -TargetObject '0000:00:07.0'
    }

    It 'rejects a malformed address naming it' {
        Remove-KvmPciPassthrough rp-b -Address 'junk' -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
        "$($err[0])" | Should -Match "'junk'"
        (Get-KvmVm rp-b).PciPassthrough | Should -Be @('0000:00:03.0')
    }

    It 'reports a missing VM as ObjectNotFound; a wildcard matching nothing is silent' {
        Remove-KvmPciPassthrough nosuch -Address '0000:00:01.0' -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId VmNotFound -Command Remove-KvmPciPassthrough -Category ObjectNotFound -TargetObject 'nosuch'
        Remove-KvmPciPassthrough 'nosuch*' -Address '0000:00:01.0' -ErrorVariable err
        $err | Should -BeNullOrEmpty
    }

    It 'has full help' {
        Assert-KvmHelp Remove-KvmPciPassthrough | Out-Null
    }

    It 'completes VM names' {
        Get-KvmCompletion 'Remove-KvmPciPassthrough rp-' | Should -Be @('rp-a', 'rp-b')
    }
}
