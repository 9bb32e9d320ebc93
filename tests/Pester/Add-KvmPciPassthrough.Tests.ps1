#Requires -Version 7.4
# Add-KvmPciPassthrough: host checks before a function is given to a VM (exists, IOMMU group), errors, -WhatIf, help.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    New-KvmTestVm -Name pt-a | Out-Null
    # A function passthrough accepts: in an IOMMU group whose other members are vfio-pci, driverless or bridges.
    $script:candidates = @(Get-KvmHostPciDevice | Where-Object { $null -ne $_.IommuGroup })
    $script:noIommu = @(Get-KvmHostPciDevice | Where-Object { $null -eq $_.IommuGroup })
}

AfterAll { Complete-KvmTest }

Describe 'Add-KvmPciPassthrough' {
    It 'rejects an address the host does not have, naming it, and changes nothing' {
        Add-KvmPciPassthrough pt-a -Address '0000:ff:1f.7' -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        Assert-KvmError $err -ErrorId PciDeviceUnusable -Command Add-KvmPciPassthrough -Category InvalidArgument -TargetObject '0000:ff:1f.7'
        "$($err[0])" | Should -Match 'no such device'
        (Get-KvmVm pt-a).PciPassthrough | Should -BeNullOrEmpty
    }

    It 'rejects a malformed address naming it' {
        Add-KvmPciPassthrough pt-a -Address 'junk' -ErrorVariable err -ErrorAction SilentlyContinue
        $err.Count | Should -Be 1
        $err[0].FullyQualifiedErrorId | Should -Be 'InvalidValue,KvmPS.Commands.AddKvmPciPassthroughCommand'
        $err[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
        "$($err[0])" | Should -Match "'junk'"
    }

    It 'checks each host function: without an IOMMU group it is refused saying the IOMMU is off' {
        $all = @(Get-KvmHostPciDevice)
        $all.Count | Should -BeGreaterThan 0 -Because 'this test needs at least one host PCI function'
        foreach ($device in $all) {
            $address = $device.Address.ToString()
            Add-KvmPciPassthrough pt-a -Address $address -WarningAction SilentlyContinue -ErrorVariable err -ErrorAction SilentlyContinue
            if ($null -eq $device.IommuGroup) {
                Assert-KvmError $err -ErrorId PciDeviceUnusable -Command Add-KvmPciPassthrough -Category InvalidArgument -TargetObject $address
                "$($err[0])" | Should -Match 'IOMMU'
                (Get-KvmVm pt-a).PciPassthrough | Should -Not -Contain $address
            }
            elseif ($err) {
                # In a group with a member bound to a host driver: refused, naming the group.
                Assert-KvmError $err -ErrorId PciDeviceUnusable -Command Add-KvmPciPassthrough -Category InvalidArgument -TargetObject $address
                "$($err[0])" | Should -Match 'IOMMU group'
            }
            else {
                (Get-KvmVm pt-a).PciPassthrough | Should -Contain $address
                Remove-KvmPciPassthrough pt-a -Address $address
            }
        }
    }

    It '-WhatIf passes nothing through' {
        $any = (Get-KvmHostPciDevice | Select-Object -First 1).Address.ToString()
        Add-KvmPciPassthrough pt-a -Address $any -WhatIf -ErrorAction SilentlyContinue
        (Get-KvmVm pt-a).PciPassthrough | Should -BeNullOrEmpty
    }

    It 'takes VM objects by value and names by property name' {
        Get-KvmVm pt-a | Add-KvmPciPassthrough -Address '0000:ff:1f.7' -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -BeLike 'PciDeviceUnusable,*'
        [pscustomobject]@{ VMName = 'pt-a'; PciAddress = '0000:ff:1f.6' } | Add-KvmPciPassthrough -ErrorVariable err -ErrorAction SilentlyContinue
        "$($err[0].TargetObject)" | Should -Be '0000:ff:1f.6'
    }

    It 'reports a missing VM as ObjectNotFound; a wildcard matching nothing is silent' {
        Add-KvmPciPassthrough nosuch -Address '0000:00:00.0' -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId VmNotFound -Command Add-KvmPciPassthrough -Category ObjectNotFound -TargetObject 'nosuch'
        Add-KvmPciPassthrough 'nosuch*' -Address '0000:00:00.0' -ErrorVariable err
        $err | Should -BeNullOrEmpty
    }

    It 'adds vfio-user devices by socket, resolving a relative path, and refuses one twice' {
        Push-Location $TestDrive
        try {
            $vm = Add-KvmPciPassthrough pt-a -VfioUserSocket 'dev.sock' -PassThru
            $vm.VfioUserDevices | Should -Be @((Join-Path $TestDrive 'dev.sock'))
            Add-KvmPciPassthrough pt-a -VfioUserSocket (Join-Path $TestDrive 'dev.sock') -ErrorVariable err -ErrorAction SilentlyContinue
            $err.Count | Should -Be 1
            "$($err[0])" | Should -Match 'already has vfio-user device'
            (Get-KvmVm pt-a).VfioUserDevices.Count | Should -Be 1
        }
        finally { Pop-Location; Remove-KvmPciPassthrough pt-a -VfioUserSocket (Join-Path $TestDrive 'dev.sock') }
    }

    It 'refuses to start a VM whose vfio-user server is not listening, naming the socket' {
        $socket = Join-Path $TestDrive 'absent.sock'
        Add-KvmPciPassthrough pt-a -VfioUserSocket $socket
        try {
            Start-KvmVm pt-a -ErrorVariable err -ErrorAction SilentlyContinue
            $err.Count | Should -BeGreaterThan 0
            "$($err[0])" | Should -Match ([regex]::Escape($socket))
            "$($err[0])" | Should -Match 'no such socket'
            (Get-KvmVm pt-a).State | Should -Be 'Off'
        }
        finally { Remove-KvmPciPassthrough pt-a -VfioUserSocket $socket }
    }

    It 'gives a VM a device its vfio-user server serves: the built-in guest drives it through BARs, MSI-X and DMA' {
        # The project's own vfio-user test device (tests/KvmPS.VfioUserTestDevice), built with the solution.
        $server = Get-ChildItem (Join-Path $PSScriptRoot '../KvmPS.VfioUserTestDevice/bin/Release') -Recurse -Filter 'KvmPS.VfioUserTestDevice.dll' |
            Select-Object -First 1
        $server | Should -Not -BeNullOrEmpty -Because 'the solution build makes the test device server'
        $socket = Join-Path $env:KVMPS_HOME 'vfu.sock'
        $process = Start-Process dotnet -ArgumentList $server.FullName, '--socket', $socket -PassThru -RedirectStandardOutput (Join-Path $TestDrive 'vfu.out')
        try {
            $deadline = (Get-Date).AddSeconds(30)
            while (-not (Test-Path -LiteralPath $socket) -and (Get-Date) -lt $deadline) { Start-Sleep -Milliseconds 200 }
            New-KvmVm -Definition @{ Name = 'pt-vu'; MemoryStartupBytes = 64MB; Boot = @{ Cmdline = 'kvmps.run=vfu test 3' } } | Out-Null
            Add-KvmPciPassthrough pt-vu -VfioUserSocket $socket
            Start-KvmVm pt-vu
            $deadline = (Get-Date).AddSeconds(60)
            while (-not ((Get-KvmConsoleLog pt-vu) -match '^vfu: (ok|FAIL)') -and (Get-Date) -lt $deadline) { Start-Sleep -Milliseconds 500 }
            $log = Get-KvmConsoleLog pt-vu
            $log | Should -Contain 'vfu: ok'
            ($log -match '^vfu: test rounds=3 ok=3 irqs=3 completed=3') | Should -Not -BeNullOrEmpty
        }
        finally {
            Stop-KvmVm pt-vu -Force -ErrorAction SilentlyContinue
            Remove-KvmVm pt-vu -Force -Confirm:$false -ErrorAction SilentlyContinue
            Stop-Process -Id $process.Id -ErrorAction SilentlyContinue
        }
    }

    It 'asks for -Address or -VfioUserSocket' {
        { Add-KvmPciPassthrough pt-a -ErrorAction Stop } | Should -Throw '*-VfioUserSocket*'
    }

    It 'has full help' {
        Assert-KvmHelp Add-KvmPciPassthrough | Out-Null
    }

    It 'completes VM names' {
        Get-KvmCompletion 'Add-KvmPciPassthrough pt' | Should -Be @('pt-a')
    }
}

Describe 'Add-/Remove-KvmPciPassthrough on a running VM' {
    BeforeAll {
        $server = Get-ChildItem (Join-Path $PSScriptRoot '../KvmPS.VfioUserTestDevice/bin/Release') -Recurse -Filter 'KvmPS.VfioUserTestDevice.dll' |
            Select-Object -First 1
        $server | Should -Not -BeNullOrEmpty -Because 'the solution build makes the test device server'
        $script:socket = Join-Path $env:KVMPS_HOME 'vfu-live.sock'
        $script:serverErr = Join-Path $TestDrive 'vfu-live.err'
        $script:serverProcess = Start-Process dotnet -ArgumentList $server.FullName, '--socket', $socket -PassThru `
            -RedirectStandardOutput (Join-Path $TestDrive 'vfu-live.out') -RedirectStandardError $serverErr
        $deadline = (Get-Date).AddSeconds(30)
        while (-not (Test-Path -LiteralPath $socket) -and (Get-Date) -lt $deadline) { Start-Sleep -Milliseconds 200 }
        New-KvmTestVm -Name pt-live -Start | Out-Null
        $deadline = (Get-Date).AddSeconds(60)
        while (-not ((Get-KvmConsoleLog pt-live) -match 'ready') -and (Get-Date) -lt $deadline) { Start-Sleep -Milliseconds 500 }
    }
    AfterAll {
        Remove-KvmTestVm pt-live
        Stop-Process -Id $script:serverProcess.Id -ErrorAction SilentlyContinue
    }

    It 'hot-plugs a vfio-user device into the running VM, whose guest sees it, and stores it' {
        $vm = Add-KvmPciPassthrough pt-live -VfioUserSocket $socket -PassThru -WarningVariable warnings
        $warnings | Should -BeNullOrEmpty -Because 'nothing waits for a restart'
        $vm.State | Should -Be 'Running'
        $vm.VfioUserDevices | Should -Be @($socket)
        $device = Get-KvmTestLiveDevice pt-live | Where-Object { $_.Type -eq 'vfio-user' -and $_.socket -eq $socket }
        $device | Should -Not -BeNullOrEmpty
        $deadline = (Get-Date).AddSeconds(60)
        $added = "pci: slot $($device.Pci.Substring(3, 2)) added 1b36:7f5e"
        while (-not ((Get-KvmConsoleLog pt-live) -match [regex]::Escape($added)) -and (Get-Date) -lt $deadline) { Start-Sleep -Milliseconds 500 }
        (Get-KvmConsoleLog pt-live) -match [regex]::Escape($added) | Should -Not -BeNullOrEmpty
    }

    It 'unplugs it again: the guest ejects it, the server sees the connection close, the definition drops it' {
        Remove-KvmPciPassthrough pt-live -VfioUserSocket $socket -WarningVariable warnings
        $warnings | Should -BeNullOrEmpty
        (Get-KvmVm pt-live).VfioUserDevices | Should -BeNullOrEmpty
        Get-KvmTestLiveDevice pt-live | Where-Object { $_.Type -eq 'vfio-user' } | Should -BeNullOrEmpty
        (Get-KvmConsoleLog pt-live) -match 'pci: slot [0-9a-f]{2} ejected' | Should -Not -BeNullOrEmpty
        $deadline = (Get-Date).AddSeconds(10)
        while (-not ((Get-Content -Raw $serverErr) -match 'client closed the connection') -and (Get-Date) -lt $deadline) { Start-Sleep -Milliseconds 200 }
        Get-Content -Raw $serverErr | Should -Match 'client closed the connection'
        (Get-KvmVm pt-live).State | Should -Be 'Running'
    }

    It 'refuses a socket no server listens on, naming it, and the VM runs on without it' {
        $absent = Join-Path $TestDrive 'nobody.sock'
        Add-KvmPciPassthrough pt-live -VfioUserSocket $absent -ErrorVariable err -ErrorAction SilentlyContinue
        $err.Count | Should -BeGreaterThan 0
        "$($err[0])" | Should -Match ([regex]::Escape($absent))
        (Get-KvmVm pt-live).VfioUserDevices | Should -BeNullOrEmpty
        (Get-KvmVm pt-live).State | Should -Be 'Running'
    }
}
