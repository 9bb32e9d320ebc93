#Requires -Version 7.4
# -HostName on Get-KvmVm, Start-KvmVm, Stop-KvmVm, Restart-KvmVm, Suspend-KvmVm and Resume-KvmVm against two namespace hosts with real sshds (TwoHosts.psm1,
# docs/remote.md): the cmdlets run in this (the root) namespace and reach h2 through an ssh that runs in h1's.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Join-Path $PSScriptRoot 'TwoHosts.psm1') -Force
    $script:LocalStore = Initialize-KvmTest
    $script:SkipReason = Get-KvmTestHostPairSkipReason
    $script:Pair = $null
    $script:Saved = @{ Ssh = $env:KVMPS_SSH; Config = $env:KVMPS_SSH_CONFIG }
    if (-not $script:SkipReason) {
        # Each host runs the kvmps and kvmps-vmm published with the module under test.
        $bin = Join-Path (Split-Path (Get-Module KvmPS).Path) 'bin'
        $script:Pair = New-KvmTestHostPair -BinDirectory $bin
        $env:KVMPS_SSH = $script:Pair.SshFromHost1
        $env:KVMPS_SSH_CONFIG = $script:Pair.SshConfigPath
        $script:H2 = $script:Pair.Host2.Address
        $script:Key = $script:Pair.ClientKeyPath
        # A VM in h2's store only.
        $env:KVMPS_HOME = $script:Pair.Host2.StoreHome
        try { New-KvmTestVm -Name remote-a | Out-Null } finally { $env:KVMPS_HOME = $script:LocalStore }
    }
}

AfterAll {
    if ($script:Pair) {
        $env:KVMPS_HOME = $script:Pair.Host2.StoreHome
        Get-KvmVm | Where-Object IsActive | Stop-KvmVm -TurnOff -Confirm:$false -ErrorAction SilentlyContinue
        $env:KVMPS_HOME = $script:LocalStore
    }
    Remove-KvmTestHostPair $script:Pair
    $env:KVMPS_SSH = $script:Saved.Ssh
    $env:KVMPS_SSH_CONFIG = $script:Saved.Config
    Complete-KvmTest
}

Describe '-HostName' {
    BeforeEach {
        if ($script:SkipReason) { Set-ItResult -Skipped -Because $script:SkipReason }
    }

    It 'Get-KvmVm -HostName lists the VMs of that host, each naming its host' {
        $vms = @(Get-KvmVm -HostName $script:H2 -UserName root -KeyFilePath $script:Key -ErrorAction Stop)
        $vm = $vms | Where-Object Name -eq 'remote-a'
        $vm | Should -HaveCount 1
        $vm | Should -BeOfType ([KvmPS.PowerShell.KvmRemoteVm])
        $vm.HostName | Should -Be $script:H2
        $vm.ComputerName | Should -Be $script:H2
        $vm.UserName | Should -Be 'root'
        $vm.State | Should -Be 'Off'
        $vm.Path | Should -BeLike "$($script:Pair.Host2.StoreHome)*"
        # This host's store does not have it.
        Get-KvmVm -Name remote-a -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        # user@host in -HostName is the same as -UserName.
        (Get-KvmVm -HostName "root@$($script:H2)" -KeyFilePath $script:Key -Name remote-a -ErrorAction Stop).Name | Should -Be 'remote-a'
    }

    It 'Start-KvmVm -HostName starts the VM there and Stop-KvmVm from the pipeline stops it there' {
        $started = Start-KvmVm -Name remote-a -HostName $script:H2 -UserName root -KeyFilePath $script:Key -PassThru -Confirm:$false -ErrorAction Stop
        $started.State | Should -Be 'Running'
        $started.HostName | Should -Be $script:H2
        $started.ProcessId | Should -BeGreaterThan 0

        Get-KvmVm -HostName $script:H2 -UserName root -KeyFilePath $script:Key -Name remote-a | Stop-KvmVm -TurnOff -Confirm:$false -ErrorAction Stop
        (Get-KvmVm -HostName $script:H2 -UserName root -KeyFilePath $script:Key -Name remote-a).State | Should -Be 'Off'
    }

    It 'Suspend-KvmVm, Resume-KvmVm and Restart-KvmVm act on the VM there, through parameters and the pipeline' {
        $remote = @{ HostName = $script:H2; UserName = 'root'; KeyFilePath = $script:Key }
        $first = Start-KvmVm -Name remote-a @remote -PassThru -Confirm:$false -ErrorAction Stop
        try {
            $paused = Suspend-KvmVm -Name remote-a @remote -PassThru -Confirm:$false -ErrorAction Stop
            $paused | Should -BeOfType ([KvmPS.PowerShell.KvmRemoteVm])
            $paused.State | Should -Be 'Paused'
            $paused.HostName | Should -Be $script:H2
            (Get-KvmVm -Name remote-a @remote).State | Should -Be 'Paused'

            $resumed = Get-KvmVm -Name remote-a @remote | Resume-KvmVm -PassThru -Confirm:$false -ErrorAction Stop
            $resumed.State | Should -Be 'Running'
            $resumed.ProcessId | Should -Be $first.ProcessId

            # A restart is a new VMM process on that host.
            $restarted = Restart-KvmVm -Name remote-a @remote -TurnOff -PassThru -Confirm:$false -ErrorAction Stop
            $restarted.State | Should -Be 'Running'
            $restarted.HostName | Should -Be $script:H2
            $restarted.ProcessId | Should -Not -Be $first.ProcessId
            # Nothing of it happened in this host's store.
            Get-KvmVm -Name remote-a -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        }
        finally {
            Stop-KvmVm -Name remote-a @remote -TurnOff -Confirm:$false -ErrorAction SilentlyContinue
        }
        # -TimeoutSec is this host's setting: refused with -HostName, naming it.
        Restart-KvmVm -Name remote-a @remote -TimeoutSec 5 -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
        "$($err[0])" | Should -BeLike '*-TimeoutSec*-HostName*'
        # -WhatIf names the host and changes nothing.
        Suspend-KvmVm -Name remote-a @remote -WhatIf
        (Get-KvmVm -Name remote-a @remote).State | Should -Be 'Off'
    }

    It 'a name missing on that host is VmNotFound naming the host' {
        Get-KvmVm -HostName $script:H2 -UserName root -KeyFilePath $script:Key -Name nowhere -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -Be 'VmNotFound,KvmPS.Commands.GetKvmVmCommand'
        "$($err[0])" | Should -BeLike "*nowhere*host '$('root@' + $script:H2)'*"
    }

    It 'a key the host does not accept is RemoteAuthenticationFailed naming the host' {
        Get-KvmVm -HostName $script:H2 -UserName root -KeyFilePath $script:Pair.OtherKeyPath -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -Be 'RemoteAuthenticationFailed,KvmPS.Commands.GetKvmVmCommand'
        "$($err[0])" | Should -BeLike "*Host 'root@$($script:H2)' refused the SSH key*"
    }
}

Describe '-HostName validation' {
    It 'refuses a host name ssh could read as an option, before ssh runs' {
        $marker = Join-Path $TestDrive 'pwned'
        Get-KvmVm -HostName "-oProxyCommand=touch $marker" -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -Be 'InvalidValue,KvmPS.Commands.GetKvmVmCommand'
        "$($err[0])" | Should -BeLike "*-HostName*starts with '-'*"
        Test-Path $marker | Should -BeFalse
        Stop-KvmVm -Name x -HostName 'h2' -UserName '-oProxyCommand=x' -ErrorVariable err2 -ErrorAction SilentlyContinue
        $err2[0].FullyQualifiedErrorId | Should -Be 'InvalidValue,KvmPS.Commands.StopKvmVmCommand'
        "$($err2[0])" | Should -BeLike '*-UserName*'
    }

    It '-UserName without -HostName is an error' {
        Get-KvmVm -UserName root -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be 'InvalidValue,KvmPS.Commands.GetKvmVmCommand'
    }
}
