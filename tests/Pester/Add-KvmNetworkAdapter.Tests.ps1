#Requires -Version 7.4
# Add-KvmNetworkAdapter: bridge and tap adapters, MAC addresses, pipeline, -WhatIf, errors naming the input.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    New-KvmTestVm -Name na-a | Out-Null
    New-KvmTestVm -Name na-b | Out-Null
}

AfterAll { Complete-KvmTest }

Describe 'Add-KvmNetworkAdapter' {
    It 'adds an adapter on a bridge with a generated locally administered MAC, outputting nothing' {
        Add-KvmNetworkAdapter na-a -BridgeName br0 | Should -BeNullOrEmpty
        $nic = (Get-KvmVm na-a).NetworkAdapters
        @($nic).Count | Should -Be 1
        $nic[0].BridgeName | Should -Be 'br0'
        "$($nic[0].MacAddress)" | Should -Match '^52:54:00(:[0-9a-f]{2}){3}$'
    }

    It 'takes -SwitchName (Hyper-V) for the bridge and gives each adapter its own MAC' {
        $vm = Add-KvmNetworkAdapter na-a -SwitchName br1 -PassThru
        @($vm.NetworkAdapters).Count | Should -Be 2
        $vm.NetworkAdapters[1].BridgeName | Should -Be 'br1'
        "$($vm.NetworkAdapters[1].MacAddress)" | Should -Not -Be "$($vm.NetworkAdapters[0].MacAddress)"
    }

    It 'adds an adapter on an existing tap with the MAC given' {
        Add-KvmNetworkAdapter na-b -TapName tap-x -MacAddress '52:54:00:12:34:56'
        $nic = (Get-KvmVm na-b).NetworkAdapters
        $nic[0].TapName | Should -Be 'tap-x'
        "$($nic[0].MacAddress)" | Should -Be '52:54:00:12:34:56'
    }

    It 'shows the adapters in the list view' {
        $text = Get-KvmVm na-b | Format-List | Out-String -Width 80
        $text | Should -Match 'NetworkAdapters\s+: 52:54:00:12:34:56 on (tap )?tap-x'
    }

    It 'takes VM objects by value and names by property name' {
        Get-KvmVm na-b | Add-KvmNetworkAdapter -BridgeName br0
        [pscustomobject]@{ VMName = 'na-b' } | Add-KvmNetworkAdapter -BridgeName br1
        @((Get-KvmVm na-b).NetworkAdapters).Count | Should -Be 3
    }

    It '-WhatIf adds nothing' {
        $lines = Get-KvmWhatIfLine { Add-KvmNetworkAdapter na-a -BridgeName br9 -WhatIf }
        $lines | Should -Match 'target "na-a"'
        $lines | Should -Match 'br9'
        @((Get-KvmVm na-a).NetworkAdapters).Count | Should -Be 2
    }

    It 'needs exactly one of -BridgeName and -TapName' {
        { Add-KvmNetworkAdapter na-a -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidValue,KvmPS.Commands.AddKvmNetworkAdapterCommand'
        { Add-KvmNetworkAdapter na-a -BridgeName br0 -TapName t0 -ErrorAction Stop } | Should -Throw '*BridgeName*TapName*'
    }

    It 'rejects a malformed MAC address naming -MacAddress and the value' -Tag 'Issue9' {
        Add-KvmNetworkAdapter na-a -TapName t0 -MacAddress 'zz' -ErrorVariable err -ErrorAction SilentlyContinue
        $err.Count | Should -Be 1
        $err[0].FullyQualifiedErrorId | Should -Be 'InvalidValue,KvmPS.Commands.AddKvmNetworkAdapterCommand'
        $err[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
        "$($err[0])" | Should -Match "'zz'"
        "$($err[0])" | Should -Match 'MacAddress'
        @((Get-KvmVm na-a).NetworkAdapters).Count | Should -Be 2
    }

    It 'reports a missing VM as ObjectNotFound; a wildcard matching nothing is silent' {
        Add-KvmNetworkAdapter nosuch -BridgeName br0 -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId VmNotFound -Command Add-KvmNetworkAdapter -Category ObjectNotFound -TargetObject 'nosuch'
        Add-KvmNetworkAdapter 'nosuch*' -BridgeName br0 -ErrorVariable err
        $err | Should -BeNullOrEmpty
    }

    It 'has full help' {
        Assert-KvmHelp Add-KvmNetworkAdapter | Out-Null
    }

    It 'completes VM names' {
        Get-KvmCompletion 'Add-KvmNetworkAdapter na-' | Should -Be @('na-a', 'na-b')
    }
}

Describe 'Add-KvmNetworkAdapter on a running VM' {
    BeforeAll {
        # The VM runs in a network namespace of the test's own, so the taps its VMM creates stay there.
        $script:ns = 'kvt-an' + [guid]::NewGuid().ToString('N').Substring(0, 6)
        $script:run = Start-KvmTestVmInNamespace -Name an-run -Namespace $ns
    }
    AfterAll {
        Remove-KvmTestVm an-run
        & ip netns delete $ns
    }

    It 'hot-plugs the adapter into the same kvmps-vmm, which lists it on its tap, and stores it' {
        Add-KvmNetworkAdapter an-run -TapName anhot0 -MacAddress '52:54:00:aa:00:01'
        $vm = Get-KvmVm an-run
        $vm.ProcessId | Should -Be $run.ProcessId
        "$($vm.NetworkAdapters[0].MacAddress)" | Should -Be '52:54:00:aa:00:01'
        $device = Get-KvmTestLiveDevice an-run | Where-Object Type -eq 'net'
        $device.Mac | Should -Be '52:54:00:aa:00:01'
        $device.Tap | Should -Be 'anhot0'
        & ip netns exec $ns ip link show anhot0 | Out-Null
        $LASTEXITCODE | Should -Be 0 -Because 'the VMM created the tap in its namespace'
    }

    It '-Config stores an adapter for the next start only' {
        Add-KvmNetworkAdapter an-run -TapName anlater0 -MacAddress '52:54:00:aa:00:02' -Config -WarningAction SilentlyContinue
        (Get-KvmVm an-run).NetworkAdapters | ForEach-Object { "$($_.MacAddress)" } | Should -Contain '52:54:00:aa:00:02'
        Get-KvmTestLiveDevice an-run | Where-Object Mac -eq '52:54:00:aa:00:02' | Should -BeNullOrEmpty
    }
}

Describe 'Add-KvmNetworkAdapter -Network' {
    BeforeAll { New-KvmTestVm -Name na-net | Out-Null }

    It 'needs exactly one of -Network, -BridgeName, -TapName and -SriovVf' {
        { Add-KvmNetworkAdapter na-net -Network lab -BridgeName br0 -ErrorAction Stop } | Should -Throw '*-Network, -BridgeName, -TapName and -SriovVf*'
        { Add-KvmNetworkAdapter na-net -Network lab -TapName t0 -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidValue,KvmPS.Commands.AddKvmNetworkAdapterCommand'
    }

    It '-WhatIf names the network and adds nothing' {
        $lines = Get-KvmWhatIfLine { Add-KvmNetworkAdapter na-net -Network lab -WhatIf }
        $lines | Should -Match 'target "na-net"'
        $lines | Should -Match "on network 'lab'"
        @((Get-KvmVm na-net).NetworkAdapters).Count | Should -Be 0
    }

    It 'adds an adapter on a network, with the MAC rule of bridge adapters' -Tag 'NetworkManager' {
        New-KvmNetwork -Name lab -BridgeName (New-KvmTestNetName) -Subnet "10.242.$(Get-Random -Minimum 10 -Maximum 250).0/24" | Out-Null
        $vm = Add-KvmNetworkAdapter na-net -Network lab -PassThru
        $nic = @($vm.NetworkAdapters)
        $nic.Count | Should -Be 1
        $nic[0].NetworkName | Should -Be 'lab'
        $nic[0].BridgeName | Should -BeNullOrEmpty
        "$($nic[0].MacAddress)" | Should -Match '^52:54:00(:[0-9a-f]{2}){3}$'
        (Get-KvmNetwork lab).UsedBy | Should -Contain 'na-net'
    }

    It 'refuses a network that does not exist, naming it, and adds nothing' -Tag 'NetworkManager' {
        Add-KvmNetworkAdapter na-net -Network nosuchnet -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId NetworkNotFound -Command Add-KvmNetworkAdapter -Category ObjectNotFound -TargetObject 'na-net'
        "$($err[0])" | Should -Match 'nosuchnet'
        @((Get-KvmVm na-net).NetworkAdapters).Count | Should -Be 1
    }
}
