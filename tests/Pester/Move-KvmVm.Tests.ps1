#Requires -Version 7.4
# Move-KvmVm between two namespace hosts with real sshds (TwoHosts.psm1, docs/migration.md "Moving a VM to another
# host"). The source side (the VM's VMM, and the cmdlet that opens the ssh tunnel to it) must share h1's network
# namespace, so the cmdlets run in a child pwsh started in it (ip netns exec), with h1's store.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Join-Path $PSScriptRoot 'TwoHosts.psm1') -Force
    $script:LocalStore = Initialize-KvmTest
    $script:SkipReason = Get-KvmTestHostPairSkipReason
    $script:Pair = $null
    if (-not $script:SkipReason) {
        $bin = Join-Path (Split-Path (Get-Module KvmPS).Path) 'bin'
        $script:Pair = New-KvmTestHostPair -BinDirectory $bin
        $script:H2 = "root@$($script:Pair.Host2.Address)"
    }

    <# Runs a script in a child pwsh in h1's namespace with h1's store and the module; returns its output parsed from JSON. #>
    function Invoke-OnHost1 {
        param([Parameter(Mandatory)] [string] $Script)
        $pwsh = @(Get-KvmTestPwsh)
        $prelude = "`$ErrorActionPreference = 'Stop'; `$ProgressPreference = 'SilentlyContinue'; Import-Module '$(Get-KvmTestModulePath)'; "
        $env:KVMPS_HOME = $script:Pair.Host1.StoreHome
        $env:KVMPS_SSH_CONFIG = $script:Pair.SshConfigPath
        try {
            $output = & (Get-KvmTestNetnsRunner) $script:Pair.Host1.Namespace @pwsh -NoProfile -NonInteractive -Command ($prelude + $Script) 2>&1
            [pscustomobject]@{ ExitCode = $LASTEXITCODE; Text = ($output | Out-String) }
        }
        finally {
            $env:KVMPS_HOME = $script:LocalStore
            $env:KVMPS_SSH_CONFIG = $null
        }
    }
}

AfterAll {
    if ($script:Pair) {
        foreach ($store in $script:Pair.Host1.StoreHome, $script:Pair.Host2.StoreHome) {
            $env:KVMPS_HOME = $store
            Get-KvmVm | Where-Object IsActive | Stop-KvmVm -TurnOff -Confirm:$false -ErrorAction SilentlyContinue
        }
        $env:KVMPS_HOME = $script:LocalStore
    }
    Remove-KvmTestHostPair $script:Pair
    Complete-KvmTest
}

Describe 'Move-KvmVm' {
    BeforeEach {
        if ($script:SkipReason) { Set-ItResult -Skipped -Because $script:SkipReason }
    }

    It 'moves a running VM to the other host, where it runs on, and -PassThru returns it with its new host' {
        $result = Invoke-OnHost1 @"
New-KvmVm -Name moved -MemoryStartupBytes 256MB -Confirm:`$false | Out-Null
Start-KvmVm -Name moved -Confirm:`$false
`$vm = Move-KvmVm -Name moved -DestinationHost '$($script:H2)' -KeyFilePath '$($script:Pair.ClientKeyPath)' -PassThru -Confirm:`$false
'RESULT ' + (@{ Type = `$vm.GetType().FullName; HostName = `$vm.HostName; State = [string]`$vm.State; Here = @(Get-KvmVm).Count } | ConvertTo-Json -Compress)
"@
        $result.ExitCode | Should -Be 0 -Because $result.Text
        $line = ($result.Text -split "`n" | Where-Object { $_ -like 'RESULT *' } | Select-Object -Last 1)
        $line | Should -Not -BeNullOrEmpty -Because $result.Text
        $moved = $line.Substring(7) | ConvertFrom-Json
        $moved.Type | Should -Be 'KvmPS.PowerShell.KvmRemoteVm'
        $moved.HostName | Should -Be $script:Pair.Host2.Address
        $moved.State | Should -Be 'Running'
        $moved.Here | Should -Be 0

        # h2's store has it, running, and its guest did not boot again there.
        $env:KVMPS_HOME = $script:Pair.Host2.StoreHome
        try {
            (Get-KvmVm -Name moved -ErrorAction Stop).State | Should -Be 'Running'
            $serial = Join-Path $script:Pair.Host2.StoreHome 'vms/moved/serial.log'
            if (Test-Path $serial) { Get-Content -Raw $serial | Should -Not -Match 'KvmPS built-in guest' }
            Stop-KvmVm -Name moved -TurnOff -Confirm:$false
        }
        finally { $env:KVMPS_HOME = $script:LocalStore }
    }

    It 'leaves the VM running here when the destination refuses the key, with RemoteAuthenticationFailed' {
        $result = Invoke-OnHost1 @"
New-KvmVm -Name stays -MemoryStartupBytes 64MB -Confirm:`$false | Out-Null
Start-KvmVm -Name stays -Confirm:`$false
Move-KvmVm -Name stays -DestinationHost '$($script:H2)' -KeyFilePath '$($script:Pair.OtherKeyPath)' -Confirm:`$false -ErrorAction SilentlyContinue -ErrorVariable failed
'RESULT ' + (@{ Id = `$failed[0].FullyQualifiedErrorId; Message = `$failed[0].Exception.Message; State = [string](Get-KvmVm -Name stays).State } | ConvertTo-Json -Compress)
Stop-KvmVm -Name stays -TurnOff -Confirm:`$false
"@
        $line = ($result.Text -split "`n" | Where-Object { $_ -like 'RESULT *' } | Select-Object -Last 1)
        $line | Should -Not -BeNullOrEmpty -Because $result.Text
        $failure = $line.Substring(7) | ConvertFrom-Json
        $failure.Id | Should -BeLike 'RemoteAuthenticationFailed,*'
        $failure.Message | Should -BeLike "*Host '$($script:H2)' refused the SSH key*"
        $failure.State | Should -Be 'Running'
    }

    It '-IncludeStorage copies the disk into the destination store, which the moved VM uses, and keeps the image here' {
        $result = Invoke-OnHost1 @"
New-KvmVm -Name withdisk -MemoryStartupBytes 64MB -Confirm:`$false | Out-Null
Add-KvmDisk -Name withdisk -Path data.qcow2 -Format Qcow2 -SizeBytes 16MB
& qemu-io -f qcow2 -c 'write -P 0x5a 0 1M' (Join-Path `$env:KVMPS_HOME 'vms/withdisk/disks/data.qcow2') | Out-Null
Start-KvmVm -Name withdisk -Confirm:`$false
Move-KvmVm -Name withdisk -DestinationHost '$($script:H2)' -KeyFilePath '$($script:Pair.ClientKeyPath)' -IncludeStorage -Confirm:`$false -Verbose 4>&1 | ForEach-Object { 'VERBOSE ' + `$_ }
'RESULT ' + (@{ Here = @(Get-KvmVm | Where-Object Name -eq withdisk).Count } | ConvertTo-Json -Compress)
"@
        $result.ExitCode | Should -Be 0 -Because $result.Text
        # The 1 MiB written into the image went over; the rest of the 16 MiB reads as zero and is not sent.
        $result.Text | Should -Match '\(([0-9]{7,8}) of them disk data\); the disk images stay on this host' -Because $result.Text
        $line = ($result.Text -split "`n" | Where-Object { $_ -like 'RESULT *' } | Select-Object -Last 1)
        ($line.Substring(7) | ConvertFrom-Json).Here | Should -Be 0
        $copied = Join-Path $script:Pair.Host2.StoreHome 'vms/withdisk/disks/data.qcow2'
        Test-Path $copied | Should -BeTrue
        $kept = @(Get-ChildItem -Recurse -Filter data.qcow2 (Join-Path $script:Pair.Host1.StoreHome 'retained-disks'))
        $kept.Count | Should -Be 1
        $env:KVMPS_HOME = $script:Pair.Host2.StoreHome
        try {
            $vm = Get-KvmVm -Name withdisk -ErrorAction Stop
            $vm.State | Should -Be 'Running'
            Stop-KvmVm -Name withdisk -TurnOff -Confirm:$false
        }
        finally { $env:KVMPS_HOME = $script:LocalStore }
        # Both images hold the same guest-visible contents (the guest did not write): qemu-img's own comparison.
        if (Get-Command qemu-img -ErrorAction SilentlyContinue) {
            & qemu-img compare -f qcow2 -F qcow2 $kept[0].FullName $copied | Out-Null
            $LASTEXITCODE | Should -Be 0
        }
    }

    It '-IncludeStorage is refused, naming the disk, when its file already exists on the destination; the VM runs on here' {
        $taken = Join-Path $script:Pair.Host2.StoreHome 'vms/clash/disks/data.qcow2'
        New-Item -ItemType Directory -Force (Split-Path $taken) | Out-Null
        Set-Content -Path $taken -Value 'not to be overwritten'
        $result = Invoke-OnHost1 @"
New-KvmVm -Name clash -MemoryStartupBytes 64MB -Confirm:`$false | Out-Null
Add-KvmDisk -Name clash -Path data.qcow2 -Format Qcow2 -SizeBytes 4MB
Start-KvmVm -Name clash -Confirm:`$false
Move-KvmVm -Name clash -DestinationHost '$($script:H2)' -KeyFilePath '$($script:Pair.ClientKeyPath)' -IncludeStorage -Confirm:`$false -ErrorAction SilentlyContinue -ErrorVariable failed
'RESULT ' + (@{ Id = `$failed[0].FullyQualifiedErrorId; Message = `$failed[0].Exception.Message; State = [string](Get-KvmVm -Name clash).State } | ConvertTo-Json -Compress)
Stop-KvmVm -Name clash -TurnOff -Confirm:`$false
"@
        $line = ($result.Text -split "`n" | Where-Object { $_ -like 'RESULT *' } | Select-Object -Last 1)
        $line | Should -Not -BeNullOrEmpty -Because $result.Text
        $failure = $line.Substring(7) | ConvertFrom-Json
        $failure.Id | Should -BeLike 'VmMoveFailed,*'
        $failure.Message | Should -BeLike "*its disk 'data.qcow2' cannot be copied here*already exists*"
        $failure.State | Should -Be 'Running'
        Get-Content -Raw $taken | Should -BeLike 'not to be overwritten*'
        Remove-Item -Recurse -Force (Join-Path $script:Pair.Host2.StoreHome 'vms/clash')
    }

    It 'streams straight over TCP by default and through ssh with -Tunnel, and says which in its verbose line' {
        $result = Invoke-OnHost1 @"
New-KvmVm -Name viatcp -MemoryStartupBytes 64MB -Confirm:`$false | Out-Null
Start-KvmVm -Name viatcp -Confirm:`$false
Move-KvmVm -Name viatcp -DestinationHost '$($script:H2)' -KeyFilePath '$($script:Pair.ClientKeyPath)' -Confirm:`$false -Verbose 4>&1 | ForEach-Object { 'VERBOSE ' + `$_ }
"@
        $result.ExitCode | Should -Be 0 -Because $result.Text
        $result.Text | Should -Match "over tcp \(tcp:$([regex]::Escape($script:Pair.Host2.Address)):\d+\)" -Because $result.Text

        # A second VM with -Tunnel: a loopback port here forwarded by ssh to a Unix socket there.
        $result = Invoke-OnHost1 @"
New-KvmVm -Name viassh -MemoryStartupBytes 64MB -Confirm:`$false | Out-Null
Start-KvmVm -Name viassh -Confirm:`$false
Move-KvmVm -Name viassh -DestinationHost '$($script:H2)' -KeyFilePath '$($script:Pair.ClientKeyPath)' -Tunnel -Confirm:`$false -Verbose 4>&1 | ForEach-Object { 'VERBOSE ' + `$_ }
"@
        $result.ExitCode | Should -Be 0 -Because $result.Text
        $result.Text | Should -Match 'over ssh-tunnel \(tcp:127\.0\.0\.1:\d+ \(ssh tunnel to ' -Because $result.Text
        $env:KVMPS_HOME = $script:Pair.Host2.StoreHome
        try {
            (Get-KvmVm -Name viatcp, viassh -ErrorAction Stop).State | Should -Be @('Running', 'Running')
            Stop-KvmVm -Name viatcp, viassh -TurnOff -Confirm:$false
        }
        finally { $env:KVMPS_HOME = $script:LocalStore }
    }

    It 'moves a paused VM, which stays paused on the destination' {
        $result = Invoke-OnHost1 @"
New-KvmVm -Name napping -MemoryStartupBytes 64MB -Confirm:`$false | Out-Null
Start-KvmVm -Name napping -Confirm:`$false
Suspend-KvmVm -Name napping -Confirm:`$false
`$vm = Move-KvmVm -Name napping -DestinationHost '$($script:H2)' -KeyFilePath '$($script:Pair.ClientKeyPath)' -PassThru -Confirm:`$false
'RESULT ' + (@{ State = [string]`$vm.State } | ConvertTo-Json -Compress)
"@
        $result.ExitCode | Should -Be 0 -Because $result.Text
        $line = ($result.Text -split "`n" | Where-Object { $_ -like 'RESULT *' } | Select-Object -Last 1)
        ($line.Substring(7) | ConvertFrom-Json).State | Should -Be 'Paused'
        $env:KVMPS_HOME = $script:Pair.Host2.StoreHome
        try { Stop-KvmVm -Name napping -TurnOff -Confirm:$false }
        finally { $env:KVMPS_HOME = $script:LocalStore }
    }

    It '-HostName moves a VM from that host (kvmps vm migrate runs there through ssh)' {
        $h1 = "root@$($script:Pair.Host1.Address)"
        $result = Invoke-OnHost1 @"
New-KvmVm -Name fromafar -MemoryStartupBytes 64MB -Confirm:`$false | Out-Null
Start-KvmVm -Name fromafar -Confirm:`$false
`$vm = Move-KvmVm -HostName '$h1' -KeyFilePath '$($script:Pair.ClientKeyPath)' -Name fromafar -DestinationHost '$($script:H2)' -PassThru -Confirm:`$false
'RESULT ' + (@{ HostName = `$vm.HostName; State = [string]`$vm.State; Here = @(Get-KvmVm | Where-Object Name -eq fromafar).Count } | ConvertTo-Json -Compress)
"@
        $result.ExitCode | Should -Be 0 -Because $result.Text
        $line = ($result.Text -split "`n" | Where-Object { $_ -like 'RESULT *' } | Select-Object -Last 1)
        $line | Should -Not -BeNullOrEmpty -Because $result.Text
        $moved = $line.Substring(7) | ConvertFrom-Json
        $moved.HostName | Should -Be $script:Pair.Host2.Address
        $moved.State | Should -Be 'Running'
        $moved.Here | Should -Be 0
        $env:KVMPS_HOME = $script:Pair.Host2.StoreHome
        try { Stop-KvmVm -Name fromafar -TurnOff -Confirm:$false }
        finally { $env:KVMPS_HOME = $script:LocalStore }
    }

    It '-HostName with a VM that host lacks writes VmNotFound naming the host' {
        $h1 = "root@$($script:Pair.Host1.Address)"
        $result = Invoke-OnHost1 @"
Move-KvmVm -HostName '$h1' -KeyFilePath '$($script:Pair.ClientKeyPath)' -Name nosuchvm -DestinationHost '$($script:H2)' -Confirm:`$false -ErrorAction SilentlyContinue -ErrorVariable failed
'RESULT ' + (@{ Id = `$failed[0].FullyQualifiedErrorId; Message = `$failed[0].Exception.Message } | ConvertTo-Json -Compress)
"@
        $line = ($result.Text -split "`n" | Where-Object { $_ -like 'RESULT *' } | Select-Object -Last 1)
        $line | Should -Not -BeNullOrEmpty -Because $result.Text
        $failure = $line.Substring(7) | ConvertFrom-Json
        $failure.Id | Should -BeLike 'VmNotFound,*'
        $failure.Message | Should -BeLike "*'nosuchvm'*'$h1'*"
    }

    It '-WhatIf moves nothing and names the destination' {
        $result = Invoke-OnHost1 @"
New-KvmVm -Name whatif -MemoryStartupBytes 64MB -Confirm:`$false | Out-Null
Move-KvmVm -Name whatif -DestinationHost '$($script:H2)' -WhatIf
"@
        $result.Text | Should -BeLike "*Move the running VM to host '$($script:H2)'*"
    }
}

Describe 'Move-KvmVm parameters and help' {
    It '-MigrationAddress with -Tunnel is a parameter error, and nothing runs' {
        { Move-KvmVm -Name any -DestinationHost 'h2' -Tunnel -MigrationAddress 10.0.0.2 -Confirm:$false -ErrorAction Stop } |
            Should -Throw -ExpectedMessage '*-MigrationAddress is for the direct TCP stream*'
    }

    It 'documents every parameter, -HostName, -Tunnel and -MigrationAddress included' {
        $help = Assert-KvmHelp Move-KvmVm
        @($help.Parameters.Parameter.Name) | Should -Contain 'HostName'
        @($help.Parameters.Parameter.Name) | Should -Contain 'Tunnel'
        @($help.Parameters.Parameter.Name) | Should -Contain 'MigrationAddress'
    }
}

# -HostName on the other lifecycle cmdlets whose kvmps verbs exist (docs/remote.md): run from h1's namespace against
# h1's own sshd, so the remote kvmps works on the store the child pwsh sees too.
Describe 'Update-KvmVmm, Checkpoint-KvmVm and Restore-KvmVmSnapshot -HostName' {
    BeforeEach {
        if ($script:SkipReason) { Set-ItResult -Skipped -Because $script:SkipReason }
    }

    It 'Checkpoint-KvmVm -HostName takes the checkpoint there and -PassThru names the host' {
        $h1 = "root@$($script:Pair.Host1.Address)"
        $result = Invoke-OnHost1 @"
New-KvmVm -Name cpremote -MemoryStartupBytes 64MB -Confirm:`$false | Out-Null
Start-KvmVm -Name cpremote -Confirm:`$false
`$cp = Checkpoint-KvmVm -HostName '$h1' -KeyFilePath '$($script:Pair.ClientKeyPath)' -Name cpremote -SnapshotName first -PassThru -Confirm:`$false
'RESULT ' + (@{ Name = `$cp.Name; HostName = `$cp.HostName; Type = `$cp.PSObject.TypeNames[0]; Local = @(Get-KvmVmSnapshot -VMName cpremote).Name } | ConvertTo-Json -Compress)
Stop-KvmVm -Name cpremote -TurnOff -Confirm:`$false
"@
        $result.ExitCode | Should -Be 0 -Because $result.Text
        $line = ($result.Text -split "`n" | Where-Object { $_ -like 'RESULT *' } | Select-Object -Last 1)
        $line | Should -Not -BeNullOrEmpty -Because $result.Text
        $cp = $line.Substring(7) | ConvertFrom-Json
        $cp.Name | Should -Be 'first'
        $cp.HostName | Should -Be $script:Pair.Host1.Address
        $cp.Type | Should -Be 'KvmPS.RemoteVmSnapshot'
        @($cp.Local) | Should -Contain 'first'
    }

    It 'Update-KvmVmm -HostName upgrades the VMM there: a new pid, the VM running' {
        $h1 = "root@$($script:Pair.Host1.Address)"
        $result = Invoke-OnHost1 @"
New-KvmVm -Name upremote -MemoryStartupBytes 64MB -Confirm:`$false | Out-Null
Start-KvmVm -Name upremote -Confirm:`$false
`$before = (Get-KvmVm -Name upremote).ProcessId
`$vm = Update-KvmVmm -HostName '$h1' -KeyFilePath '$($script:Pair.ClientKeyPath)' -Name upremote -PassThru -Confirm:`$false
'RESULT ' + (@{ Before = `$before; After = `$vm.ProcessId; State = [string]`$vm.State; Type = `$vm.GetType().FullName } | ConvertTo-Json -Compress)
Stop-KvmVm -Name upremote -TurnOff -Confirm:`$false
"@
        $result.ExitCode | Should -Be 0 -Because $result.Text
        $line = ($result.Text -split "`n" | Where-Object { $_ -like 'RESULT *' } | Select-Object -Last 1)
        $line | Should -Not -BeNullOrEmpty -Because $result.Text
        $up = $line.Substring(7) | ConvertFrom-Json
        $up.Type | Should -Be 'KvmPS.PowerShell.KvmRemoteVm'
        $up.State | Should -Be 'Running'
        $up.After | Should -Not -Be $up.Before
    }

    It 'Update-KvmVmm -HostName with a VM that host lacks writes VmNotFound naming the host' {
        $h1 = "root@$($script:Pair.Host1.Address)"
        $result = Invoke-OnHost1 @"
Update-KvmVmm -HostName '$h1' -KeyFilePath '$($script:Pair.ClientKeyPath)' -Name nosuchvm -Confirm:`$false -ErrorAction SilentlyContinue -ErrorVariable failed
'RESULT ' + (@{ Id = `$failed[0].FullyQualifiedErrorId } | ConvertTo-Json -Compress)
"@
        $line = ($result.Text -split "`n" | Where-Object { $_ -like 'RESULT *' } | Select-Object -Last 1)
        ($line.Substring(7) | ConvertFrom-Json).Id | Should -BeLike 'VmNotFound,*'
    }

    It 'Restore-KvmVmSnapshot -HostName restores the checkpoint there, also one a wildcard selects' {
        $h1 = "root@$($script:Pair.Host1.Address)"
        $result = Invoke-OnHost1 @"
New-KvmVm -Name rsremote -MemoryStartupBytes 64MB -Confirm:`$false | Out-Null
Checkpoint-KvmVm -Name rsremote -SnapshotName off-cp -Confirm:`$false
Start-KvmVm -Name rsremote -Confirm:`$false
`$vm = Restore-KvmVmSnapshot -HostName '$h1' -KeyFilePath '$($script:Pair.ClientKeyPath)' -VMName rsremote -Name off-cp -PassThru -Confirm:`$false
try { Restore-KvmVmSnapshot -HostName '$h1' -KeyFilePath '$($script:Pair.ClientKeyPath)' -VMName rsremote -Name 'off*' -Confirm:`$false -ErrorAction Stop; `$wild = 'none' } catch { `$wild = `$_.Exception.Message }
'RESULT ' + (@{ State = [string]`$vm.State; HostName = `$vm.HostName; Wild = `$wild } | ConvertTo-Json -Compress)
"@
        $result.ExitCode | Should -Be 0 -Because $result.Text
        $line = ($result.Text -split "`n" | Where-Object { $_ -like 'RESULT *' } | Select-Object -Last 1)
        $line | Should -Not -BeNullOrEmpty -Because $result.Text
        $restored = $line.Substring(7) | ConvertFrom-Json
        $restored.State | Should -Be 'Off' # the checkpoint was taken while the VM was off
        $restored.HostName | Should -Be $script:Pair.Host1.Address
        $restored.Wild | Should -Be 'none' # the shared snapshot selection: 'off*' selects off-cp on that host
    }

    It 'documents -HostName, -UserName and -KeyFilePath on all three' {
        foreach ($command in 'Update-KvmVmm', 'Checkpoint-KvmVm', 'Restore-KvmVmSnapshot') {
            $help = Assert-KvmHelp $command
            @($help.Parameters.Parameter.Name) | Should -Contain 'HostName'
        }
    }
}
