#Requires -Version 7.4
# Remove-KvmNetworkAdapter: removal by MAC address, pipeline, -PassThru, -WhatIf, errors naming the MAC.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    New-KvmTestVm -Name rn-a | Out-Null
    Add-KvmNetworkAdapter rn-a -TapName t1 -MacAddress '52:54:00:00:00:01'
    Add-KvmNetworkAdapter rn-a -TapName t2 -MacAddress '52:54:00:00:00:02'
    Add-KvmNetworkAdapter rn-a -TapName t3 -MacAddress '52:54:00:00:00:03'
    Add-KvmNetworkAdapter rn-a -TapName t4 -MacAddress '52:54:00:00:00:04'
}

AfterAll { Complete-KvmTest }

Describe 'Remove-KvmNetworkAdapter' {
    It 'completes -MacAddress with the adapters of the VM -Name selects' -Tag 'Issue9' {
        Get-KvmCompletion 'Remove-KvmNetworkAdapter -Name rn-a -MacAddress 52:54:00:00:00:0' | Should -Be @('52:54:00:00:00:01', '52:54:00:00:00:02', '52:54:00:00:00:03', '52:54:00:00:00:04')
    }

    It 'removes the adapter with the MAC given, outputting nothing' {
        Remove-KvmNetworkAdapter rn-a -MacAddress '52:54:00:00:00:01' | Should -BeNullOrEmpty
        ((Get-KvmVm rn-a).NetworkAdapters | ForEach-Object { "$($_.MacAddress)" }) | Should -Not -Contain '52:54:00:00:00:01'
        @((Get-KvmVm rn-a).NetworkAdapters).Count | Should -Be 3
    }

    It 'matches the MAC without case and -PassThru outputs the VM' {
        $vm = Remove-KvmNetworkAdapter rn-a -MacAddress '52:54:00:00:00:02'.ToUpperInvariant() -PassThru
        $vm.Name | Should -Be 'rn-a'
        @($vm.NetworkAdapters).Count | Should -Be 2
    }

    It 'takes VM objects by value and names by property name' {
        Get-KvmVm rn-a | Remove-KvmNetworkAdapter -MacAddress '52:54:00:00:00:03'
        [pscustomobject]@{ VMName = 'rn-a' } | Remove-KvmNetworkAdapter -MacAddress '52:54:00:00:00:04' -WhatIf
        ((Get-KvmVm rn-a).NetworkAdapters | ForEach-Object { "$($_.MacAddress)" }) | Should -Be @('52:54:00:00:00:04')
    }

    It '-WhatIf removes nothing' {
        $lines = Get-KvmWhatIfLine { Remove-KvmNetworkAdapter rn-a -MacAddress '52:54:00:00:00:04' -WhatIf }
        $lines | Should -Match 'target "rn-a"'
        $lines | Should -Match '52:54:00:00:00:04'
        @((Get-KvmVm rn-a).NetworkAdapters).Count | Should -Be 1
    }

    It 'reports a MAC the VM does not have as ObjectNotFound naming it' {
        Remove-KvmNetworkAdapter rn-a -MacAddress '52:54:00:00:00:99' -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId DeviceNotFound -Command Remove-KvmNetworkAdapter -Category ObjectNotFound -TargetObject '52:54:00:00:00:99'
        @((Get-KvmVm rn-a).NetworkAdapters).Count | Should -Be 1
    }

    It 'rejects a malformed MAC address naming the value' {
        Remove-KvmNetworkAdapter rn-a -MacAddress 'not-a-mac' -ErrorVariable err -ErrorAction SilentlyContinue
        $err.Count | Should -Be 1
        $err[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
        "$($err[0])" | Should -Match "'not-a-mac'"
    }

    It 'reports a missing VM as ObjectNotFound; a wildcard matching nothing is silent' {
        Remove-KvmNetworkAdapter nosuch -MacAddress '52:54:00:00:00:01' -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId VmNotFound -Command Remove-KvmNetworkAdapter -Category ObjectNotFound -TargetObject 'nosuch'
        Remove-KvmNetworkAdapter 'nosuch*' -MacAddress '52:54:00:00:00:01' -ErrorVariable err
        $err | Should -BeNullOrEmpty
    }

    It 'has full help' {
        Assert-KvmHelp Remove-KvmNetworkAdapter | Out-Null
    }

    It 'completes VM names' {
        Get-KvmCompletion 'Remove-KvmNetworkAdapter rn' | Should -Be @('rn-a')
    }
}

Describe 'Remove-KvmNetworkAdapter on a running VM' {
    BeforeAll {
        $script:ns = 'kvt-rn' + [guid]::NewGuid().ToString('N').Substring(0, 6)
        $script:run = Start-KvmTestVmInNamespace -Name rn-run -Namespace $ns -Setup "Add-KvmNetworkAdapter rn-run -TapName rnrun0 -MacAddress '52:54:00:bb:00:01' -Confirm:`$false"
    }
    AfterAll {
        Remove-KvmTestVm rn-run
        & ip netns delete $ns
    }

    It 'a hot-added adapter: the guest releases it, the same kvmps-vmm no longer lists it, and the definition drops it' {
        Add-KvmNetworkAdapter rn-run -TapName rnrun1 -MacAddress '52:54:00:bb:00:02'
        Get-KvmTestLiveDevice rn-run | Where-Object Mac -eq '52:54:00:bb:00:02' | Should -Not -BeNullOrEmpty
        Remove-KvmNetworkAdapter rn-run -MacAddress '52:54:00:BB:00:02' -TimeoutSec 30
        $vm = Get-KvmVm rn-run
        $vm.ProcessId | Should -Be $run.ProcessId
        $vm.NetworkAdapters | ForEach-Object { "$($_.MacAddress)" } | Should -Be @('52:54:00:bb:00:01')
        Get-KvmTestLiveDevice rn-run | Where-Object Mac -eq '52:54:00:bb:00:02' | Should -BeNullOrEmpty
    }

    It 'the adapter the VM started with leaves the running VM live too (ACPI eject of its configured slot): same kvmps-vmm, definition drops it, no warning' {
        Get-KvmTestLiveDevice rn-run | Where-Object Mac -eq '52:54:00:bb:00:01' | Should -Not -BeNullOrEmpty
        Remove-KvmNetworkAdapter rn-run -MacAddress '52:54:00:bb:00:01' -TimeoutSec 30 -WarningVariable warn
        $warn | Should -BeNullOrEmpty
        $vm = Get-KvmVm rn-run
        $vm.ProcessId | Should -Be $run.ProcessId
        @($vm.NetworkAdapters).Count | Should -Be 0
        Get-KvmTestLiveDevice rn-run | Where-Object Mac -eq '52:54:00:bb:00:01' | Should -BeNullOrEmpty
    }

    It 'refuses -Live and -Config together, removing nothing' {
        Add-KvmNetworkAdapter rn-run -TapName rnrun3 -MacAddress '52:54:00:bb:00:03'
        { Remove-KvmNetworkAdapter rn-run -MacAddress '52:54:00:bb:00:03' -Live -Config -ErrorAction Stop } | Should -Throw '*-Live or -Config, not both*'
        (Get-KvmVm rn-run).NetworkAdapters | ForEach-Object { "$($_.MacAddress)" } | Should -Contain '52:54:00:bb:00:03'
    }
}
