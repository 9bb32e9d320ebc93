#Requires -Version 7.4
# Invoke/Test/Get-KvmDesiredState with manifests naming a HostName (docs/remote.md): one run converges a manifest for
# this host and one for h2 (a namespace host with a real sshd, TwoHosts.psm1), each result naming its host.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Join-Path $PSScriptRoot 'TwoHosts.psm1') -Force
    $script:LocalStore = Initialize-KvmTest
    $script:SkipReason = Get-KvmTestHostPairSkipReason
    $script:Pair = $null
    $script:Saved = @{ Ssh = $env:KVMPS_SSH; Config = $env:KVMPS_SSH_CONFIG }
    if (-not $script:SkipReason) {
        $bin = Join-Path (Split-Path (Get-Module KvmPS).Path) 'bin'
        $script:Pair = New-KvmTestHostPair -BinDirectory $bin
        $env:KVMPS_SSH = $script:Pair.SshFromHost1
        $env:KVMPS_SSH_CONFIG = $script:Pair.SshConfigPath
        $script:H2 = $script:Pair.Host2.Address
        $script:Key = $script:Pair.ClientKeyPath
        $script:Dir = $script:Pair.Directory
        $script:RemoteManifest = Join-Path $script:Dir 'h2.psd1'
        Set-Content -Path $script:RemoteManifest -Value @"
@{
    HostName        = '$($script:H2)'
    VirtualMachines = @( @{ Name = 'ds-on-h2'; MemoryStartupBytes = 64MB; State = 'Off' } )
}
"@
        $script:LocalManifest = Join-Path $script:Dir 'here.psd1'
        Set-Content -Path $script:LocalManifest -Value "@{ VirtualMachines = @( @{ Name = 'ds-here'; MemoryStartupBytes = 64MB; State = 'Off' } ) }"
    }
}

AfterAll {
    Remove-KvmTestHostPair $script:Pair
    $env:KVMPS_SSH = $script:Saved.Ssh
    $env:KVMPS_SSH_CONFIG = $script:Saved.Config
    Complete-KvmTest
}

Describe 'Desired state on another host' {
    BeforeEach {
        if ($script:SkipReason) { Set-ItResult -Skipped -Because $script:SkipReason }
    }

    It '-WhatIf plans both hosts and changes neither' {
        Invoke-KvmDesiredState -Path $script:LocalManifest, $script:RemoteManifest -UserName root -KeyFilePath $script:Key -WhatIf -ErrorAction Stop |
            Should -BeNullOrEmpty
        Get-KvmVm -Name ds-here -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        Get-KvmVm -HostName $script:H2 -UserName root -KeyFilePath $script:Key -Name ds-on-h2 -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
    }

    It 'Test-KvmDesiredState is $false while either host drifts, with drift naming the host' {
        Test-KvmDesiredState -Path $script:LocalManifest, $script:RemoteManifest -UserName root -KeyFilePath $script:Key -ErrorAction Stop | Should -BeFalse
        $drift = @(Test-KvmDesiredState -Path $script:RemoteManifest -UserName root -KeyFilePath $script:Key -Detailed -ErrorAction Stop)
        $drift | Should -Not -BeNullOrEmpty
        $drift | ForEach-Object { $_.HostName | Should -Be "root@$($script:H2)" }
        ($drift | Where-Object Property -eq 'Ensure').VmName | Should -Be 'ds-on-h2'
    }

    It 'Invoke-KvmDesiredState converges the local and the remote manifest in one run' {
        $results = @(Invoke-KvmDesiredState -Path $script:LocalManifest, $script:RemoteManifest -UserName root -KeyFilePath $script:Key -Confirm:$false -ErrorAction Stop)
        $here = @($results | Where-Object { $_.Action.VmName -eq 'ds-here' })
        $there = @($results | Where-Object { $_.Action.VmName -eq 'ds-on-h2' })
        $here.Count | Should -BeGreaterThan 0
        $there.Count | Should -BeGreaterThan 0
        $here | ForEach-Object { $_.Status | Should -Be 'Done'; $_.PSObject.Properties['HostName'] | Should -BeNullOrEmpty }
        $there | ForEach-Object { $_.Status | Should -Be 'Done'; $_.HostName | Should -Be "root@$($script:H2)" }

        # Each VM is in its own host's store only.
        (Get-KvmVm -Name ds-here -ErrorAction Stop).State | Should -Be 'Off'
        Get-KvmVm -Name ds-on-h2 -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        (Get-KvmVm -HostName $script:H2 -UserName root -KeyFilePath $script:Key -Name ds-on-h2 -ErrorAction Stop).State | Should -Be 'Off'
        Get-KvmVm -HostName $script:H2 -UserName root -KeyFilePath $script:Key -Name ds-here -ErrorAction SilentlyContinue | Should -BeNullOrEmpty

        Test-KvmDesiredState -Path $script:LocalManifest, $script:RemoteManifest -UserName root -KeyFilePath $script:Key -ErrorAction Stop | Should -BeTrue
    }

    It 'Get-KvmDesiredState reports the remote manifest''s VMs with their host' {
        $status = @(Get-KvmDesiredState -Path $script:LocalManifest, $script:RemoteManifest -UserName root -KeyFilePath $script:Key -ErrorAction Stop)
        ($status | Where-Object Name -eq 'ds-here') | Should -BeOfType ([KvmPS.PowerShell.KvmDesiredVm])
        $remote = $status | Where-Object Name -eq 'ds-on-h2'
        $remote | Should -BeOfType ([KvmPS.Management.Remote.RemoteDesiredVmStatus])
        $remote.HostName | Should -Be "root@$($script:H2)"
        $remote.InDesiredState | Should -BeTrue
        $remote.Actual.State | Should -Be 'Off'
    }

    It 'a host that refuses the key is RemoteAuthenticationFailed naming the manifest, and Test reports $false' {
        Test-KvmDesiredState -Path $script:RemoteManifest -UserName root -KeyFilePath $script:Pair.OtherKeyPath -ErrorVariable err -ErrorAction SilentlyContinue |
            Should -BeFalse
        $err[0].FullyQualifiedErrorId | Should -Be 'RemoteAuthenticationFailed,KvmPS.Commands.TestKvmDesiredStateCommand'
        $err[0].TargetObject | Should -Be $script:RemoteManifest
    }

    It 'a HostName that could inject ssh options is InvalidManifest and runs no ssh' {
        $bad = Join-Path $script:Dir 'bad.psd1'
        Set-Content -Path $bad -Value "@{ HostName = '-oProxyCommand=touch $($script:Dir)/pwned'; VirtualMachines = @() }"
        Invoke-KvmDesiredState -Path $bad -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -Be 'InvalidManifest,KvmPS.Commands.InvokeKvmDesiredStateCommand'
        Join-Path $script:Dir 'pwned' | Should -Not -Exist
    }
}
