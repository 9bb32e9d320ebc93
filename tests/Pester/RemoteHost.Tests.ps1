#Requires -Version 7.4
# -HostName on Get-KvmVm, Start-KvmVm, Stop-KvmVm, Restart-KvmVm, Suspend-KvmVm and Resume-KvmVm, and on the cmdlets that
# change a VM (settings, firmware, balloon, DVD drives, passthrough), its checkpoints, networks, pools, volumes and the host's PCI functions there (one host pair for all of them), against two namespace hosts with real sshds (TwoHosts.psm1,
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
        # h2's PCI functions: a fake sysfs tree (an SR-IOV NIC and a plain function) for Get-KvmHostPciDevice and Set-KvmHostSriov there.
        $script:Sysfs = Join-Path ([IO.Path]::GetTempPath()) ("kvmps-rsysfs-" + [Guid]::NewGuid().ToString('N').Substring(0, 8))
        foreach ($f in @(@('0000:03:00.0', '0x020000', 'ixgbe', 8), @('0000:00:1f.0', '0x060100', 'lpc_ich', -1))) {
            $dir = Join-Path $script:Sysfs "bus/pci/devices/$($f[0])"
            New-Item -ItemType Directory -Path $dir, (Join-Path $script:Sysfs "bus/pci/drivers/$($f[2])") -Force | Out-Null
            Set-Content (Join-Path $dir vendor) '0x8086'; Set-Content (Join-Path $dir device) '0x10fb'; Set-Content (Join-Path $dir class) $f[1]
            New-Item -ItemType SymbolicLink -Path (Join-Path $dir driver) -Target (Join-Path $script:Sysfs "bus/pci/drivers/$($f[2])") | Out-Null
            if ($f[3] -ge 0) { Set-Content (Join-Path $dir sriov_totalvfs) $f[3]; Set-Content (Join-Path $dir sriov_numvfs) 0 }
        }
        $script:Pair = New-KvmTestHostPair -BinDirectory $bin -Environment @{ KVMPS_SYSFS_ROOT = $script:Sysfs }
        $env:KVMPS_SSH = $script:Pair.SshFromHost1
        $env:KVMPS_SSH_CONFIG = $script:Pair.SshConfigPath
        $script:H2 = $script:Pair.Host2.Address
        $script:Key = $script:Pair.ClientKeyPath
        # A VM in h2's store only.
        $env:KVMPS_HOME = $script:Pair.Host2.StoreHome
        try {
            New-KvmTestVm -Name remote-a | Out-Null
            New-KvmTestVm -Name remote-b | Out-Null
        }
        finally { $env:KVMPS_HOME = $script:LocalStore }
    }
}

AfterAll {
    if ($script:Pair) {
        $env:KVMPS_HOME = $script:Pair.Host2.StoreHome
        Get-KvmVm | Where-Object IsActive | Stop-KvmVm -TurnOff -Confirm:$false -ErrorAction SilentlyContinue
        $env:KVMPS_HOME = $script:LocalStore
    }
    Remove-KvmTestHostPair $script:Pair
    if ($script:Sysfs) { Remove-Item -Recurse -Force $script:Sysfs -ErrorAction SilentlyContinue }
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

Describe '-HostName on the cmdlets that change a VM and its checkpoints' {
    BeforeAll {
        # The definition as h2's store has it (read here: both hosts share this machine's file system).
        function Get-KvmTestRemoteDefinition([string] $Name) {
            $env:KVMPS_HOME = $script:Pair.Host2.StoreHome
            try { Get-KvmVm -Name $Name -ErrorAction Stop } finally { $env:KVMPS_HOME = $script:LocalStore }
        }
    }
    BeforeEach {
        if ($script:SkipReason) { Set-ItResult -Skipped -Because $script:SkipReason }
        $script:Remote = @{ HostName = $script:H2; UserName = 'root'; KeyFilePath = $script:Key }
    }

    It 'Set-KvmVcpu and Set-KvmMemory change the definition there and return the VM with its host' {
        $remote = $script:Remote
        $vm = Set-KvmVcpu -Name remote-b @remote -Count 2 -Maximum 4 -PassThru -Confirm:$false -ErrorAction Stop
        $vm | Should -BeOfType ([KvmPS.PowerShell.KvmRemoteVm])
        $vm.HostName | Should -Be $script:H2
        $vm.ProcessorCount | Should -Be 2
        $vm.MaximumProcessorCount | Should -Be 4
        # -Maximum alone keeps the count (kvmps vm setvcpus NAME --maximum N); -WhatIf changes nothing there.
        Set-KvmVcpu -Name remote-b @remote -Maximum 3 -Confirm:$false -ErrorAction Stop
        Set-KvmVcpu -Name remote-b @remote -Count 1 -WhatIf
        $definition = (Get-KvmTestRemoteDefinition remote-b).Definition
        $definition.Vcpus.Count | Should -Be 2
        $definition.Vcpus.Maximum | Should -Be 3

        # Piped: the VM brings its host.
        Get-KvmVm -Name remote-b @remote | Set-KvmMemory -StartupBytes 96MB -MinimumBytes 64MB -MaximumBytes 128MB -Confirm:$false -ErrorAction Stop
        $memory = (Get-KvmTestRemoteDefinition remote-b).Definition.Memory
        $memory.StartupBytes | Should -Be 96MB
        $memory.MinimumBytes | Should -Be 64MB
        $memory.MaximumBytes | Should -Be 128MB
        # A refusal there is the remote kvmps's message, naming the host.
        Set-KvmVcpu -Name remote-b @remote -Count 9 -Maximum 4 -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be 'RemoteCommandFailed,KvmPS.Commands.SetKvmVcpuCommand'
        "$($err[0])" | Should -BeLike "*host 'root@$($script:H2)'*"
        Get-KvmVm -Name remote-b -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
    }

    It 'Add-KvmDisk, Remove-KvmDisk, Add-, Get- and Remove-KvmNetworkAdapter change and read the VM there' {
        $remote = $script:Remote
        Add-KvmDisk -Name remote-b -Path extra.qcow2 -SizeBytes 1MB @remote -Confirm:$false -ErrorAction Stop
        Add-KvmNetworkAdapter -Name remote-b -TapName rtap0 -MacAddress '52:54:00:ab:00:07' @remote -Confirm:$false -ErrorAction Stop
        (Get-KvmTestRemoteDefinition remote-b).Disks.Path | Should -Contain 'extra.qcow2'
        $adapter = Get-KvmVmNetworkAdapter -Name remote-b @remote -ErrorAction Stop | Where-Object MacAddress -eq '52:54:00:ab:00:07'
        $adapter.PSObject.TypeNames[0] | Should -Be 'KvmPS.RemoteVmNetworkAdapter'
        $adapter.Tap | Should -Be 'rtap0'
        $adapter.HostName | Should -Be $script:H2

        Remove-KvmDisk -Name remote-b -Path extra.qcow2 @remote -Confirm:$false -ErrorAction Stop
        Remove-KvmNetworkAdapter -Name remote-b @remote -MacAddress '52:54:00:ab:00:07' -Confirm:$false -ErrorAction Stop
        $definition = Get-KvmTestRemoteDefinition remote-b
        $definition.Disks.Path | Should -Not -Contain 'extra.qcow2'
        $definition.NetworkAdapters | Where-Object { "$($_.MacAddress)" -eq '52:54:00:ab:00:07' } | Should -BeNullOrEmpty
        # The remote refusal names the device and the host.
        Remove-KvmDisk -Name remote-b -Path extra.qcow2 @remote -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be 'RemoteCommandFailed,KvmPS.Commands.RemoveKvmDiskCommand'
        "$($err[0])" | Should -BeLike "*extra.qcow2*"
    }

    It 'Get-KvmVmSnapshot and Remove-KvmVmSnapshot list and remove checkpoints there; the objects pipe on to that host' {
        $remote = $script:Remote
        Checkpoint-KvmVm -Name remote-b @remote -SnapshotName cp-1 -Confirm:$false -ErrorAction Stop
        Checkpoint-KvmVm -Name remote-b @remote -SnapshotName cp-2 -Confirm:$false -ErrorAction Stop
        $all = @(Get-KvmVmSnapshot -VMName remote-b @remote -ErrorAction Stop)
        $all | Should -HaveCount 2
        $all[0].PSObject.TypeNames[0] | Should -Be 'KvmPS.RemoteVmSnapshot'
        $all | ForEach-Object { $_.HostName | Should -Be $script:H2; $_.VmName | Should -Be 'remote-b' }
        ($all | Where-Object Name -eq 'cp-2').ParentName | Should -Be 'cp-1'
        Get-KvmVmSnapshot -VMName remote-b cp-1, nothing @remote -ErrorVariable err -ErrorAction SilentlyContinue | Should -HaveCount 1
        $err[0].FullyQualifiedErrorId | Should -Be 'SnapshotNotFound,KvmPS.Commands.GetKvmVmSnapshotCommand'

        # Piped: VMName, Name and the host come with the objects; a wildcard -Name is matched there.
        $all | Where-Object Name -eq 'cp-2' | Remove-KvmVmSnapshot -Confirm:$false -ErrorAction Stop
        $removed = @(Remove-KvmVmSnapshot -VMName remote-b -Name cp* @remote -PassThru -Confirm:$false -ErrorAction Stop)
        $removed.Name | Should -Be @('cp-1')
        $removed[0].HostName | Should -Be $script:H2
        Get-KvmVmSnapshot -VMName remote-b @remote | Should -BeNullOrEmpty
    }

    It 'Save-KvmVm, Export-KvmVm and Remove-KvmVm act on the VM there' {
        $remote = $script:Remote
        Start-KvmVm -Name remote-b @remote -Confirm:$false -ErrorAction Stop
        $saved = Save-KvmVm -Name remote-b @remote -PassThru -Confirm:$false -ErrorAction Stop
        $saved.State | Should -Be 'Saved'
        $saved.HostName | Should -Be $script:H2

        # -Path is a folder on that host (both hosts share this machine's file system here).
        $folder = Join-Path $script:Pair.Host2.StoreHome 'exported'
        Export-KvmVm -Name remote-b @remote -Path $folder -Confirm:$false -ErrorAction Stop
        Test-Path (Join-Path $folder 'remote-b') | Should -BeTrue

        $result = Remove-KvmVm -Name remote-b @remote -Force -PassThru -Confirm:$false -ErrorAction Stop
        $result.PSObject.TypeNames[0] | Should -Be 'KvmPS.RemoteVmRemoveResult'
        $result.HostName | Should -Be $script:H2
        Remove-KvmVm -Name remote-b @remote -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be 'VmNotFound,KvmPS.Commands.RemoveKvmVmCommand'

        # The export comes back into h2's store, saved state and all.
        $imported = Import-KvmVm -Path (Join-Path $folder 'remote-b') -Copy @remote -Confirm:$false -ErrorAction Stop
        $imported | Should -BeOfType ([KvmPS.PowerShell.KvmRemoteVm])
        $imported.Name | Should -Be 'remote-b'
        $imported.HostName | Should -Be $script:H2
        $imported.State | Should -Be 'Saved'
        Remove-KvmVm -Name remote-b @remote -Force -Confirm:$false -ErrorAction Stop
    }
}

Describe '-HostName on the network, pool and volume cmdlets' {
    BeforeEach {
        if ($script:SkipReason) { Set-ItResult -Skipped -Because $script:SkipReason }
        $script:Remote = @{ HostName = $script:H2; UserName = 'root'; KeyFilePath = $script:Key }
    }

    It 'New-, Get-, Set-, Start-, Stop- and Remove-KvmNetwork act on the networks there' {
        $remote = $script:Remote
        # The bridge and dnsmasq live in h2's network namespace: this host sees neither.
        $net = New-KvmNetwork -Name rlab -Mode Isolated -BridgeName rlab0 -Subnet 10.246.7.0/24 -StaticLease @{ MacAddress = '52:54:00:aa:00:01'; IPAddress = '10.246.7.10'; HostName = 'w1' } @remote -Confirm:$false -ErrorAction Stop
        try {
            $net.PSObject.TypeNames[0] | Should -Be 'KvmPS.RemoteNetwork'
            $net.HostName | Should -Be $script:H2
            $net.Mode | Should -Be 'Isolated'
            $net.Bridge | Should -Be 'rlab0'
            $net.StaticLeases[0].Address | Should -Be '10.246.7.10'
            $net.StaticLeases[0].HostName | Should -Be 'w1'
            Get-KvmNetwork -Name rlab -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
            @(Get-KvmNetwork -Name rl*, nonet @remote -ErrorVariable err -ErrorAction SilentlyContinue).Name | Should -Be @('rlab')
            $err[0].FullyQualifiedErrorId | Should -Be 'NetworkNotFound,KvmPS.Commands.GetKvmNetworkCommand'

            (Set-KvmNetwork -Name rlab -Mtu 1400 -Autostart @remote -PassThru -Confirm:$false -ErrorAction Stop).MtuBytes | Should -Be 1400
            $started = Get-KvmNetwork -Name rlab @remote | Start-KvmNetwork -PassThru -Confirm:$false -ErrorAction Stop
            $started.State | Should -Be 'Active'
            $started.HostName | Should -Be $script:H2
            (Stop-KvmNetwork -Name rlab @remote -PassThru -Confirm:$false -ErrorAction Stop).State | Should -Be 'Inactive'
        }
        finally {
            $removed = Remove-KvmNetwork -Name rlab @remote -PassThru -Confirm:$false -ErrorAction Stop
        }
        $removed.Name | Should -Be 'rlab'
        $removed.HostName | Should -Be $script:H2
    }

    It 'New-, Get-, Remove-KvmStoragePool and New-, Get-, Remove-KvmVolume act on the pools there' {
        $remote = $script:Remote
        $folder = Join-Path $script:Pair.Host2.StoreHome 'rpool'
        $pool = New-KvmStoragePool -Name rpool -Path $folder -CreatePath @remote -Confirm:$false -ErrorAction Stop
        $pool.PSObject.TypeNames[0] | Should -Be 'KvmPS.RemoteStoragePool'
        $pool.HostName | Should -Be $script:H2
        $pool.Path | Should -Be $folder
        Get-KvmStoragePool -Name rpool -ErrorAction SilentlyContinue | Should -BeNullOrEmpty

        $volume = New-KvmVolume -Name v1.qcow2 -SizeBytes 1MB -Pool rpool @remote -Confirm:$false -ErrorAction Stop
        $volume.PSObject.TypeNames[0] | Should -Be 'KvmPS.RemoteStorageVolume'
        $volume.Format | Should -Be 'qcow2'
        $volume.CapacityBytes | Should -Be 1MB
        Test-Path (Join-Path $folder 'v1.qcow2') | Should -BeTrue
        $volumes = @(Get-KvmVolume -Pool rpool -Name v*, none @remote -ErrorVariable err -ErrorAction SilentlyContinue)
        $volumes.Name | Should -Be @('v1.qcow2')
        $err[0].FullyQualifiedErrorId | Should -Be 'StorageVolumeNotFound,KvmPS.Commands.GetKvmVolumeCommand'

        # Piped: Pool, Name and the host come with the objects.
        @($volumes | Remove-KvmVolume -PassThru -Confirm:$false -ErrorAction Stop) | Should -HaveCount 1
        Test-Path (Join-Path $folder 'v1.qcow2') | Should -BeFalse
        @(Get-KvmStoragePool -Name rp* @remote | Remove-KvmStoragePool -PassThru -Confirm:$false -ErrorAction Stop).HostName | Should -Be @($script:H2)
    }
}

Describe '-HostName on the VM settings, firmware, balloon, DVD, passthrough and host device cmdlets' {
    BeforeAll {
        function Get-KvmTestRemoteDefinition([string] $Name) {
            $env:KVMPS_HOME = $script:Pair.Host2.StoreHome
            try { (Get-KvmVm -Name $Name -ErrorAction Stop).Definition } finally { $env:KVMPS_HOME = $script:LocalStore }
        }
        if (-not $script:SkipReason) {
            Import-Module (Join-Path $PSScriptRoot 'DvdTestHelpers.psm1') -Force
            # In h2's store: an allowed folder there (both hosts share this machine's file system).
            $script:Iso = New-KvmTestIso -Path (Join-Path $script:Pair.Host2.StoreHome 'install.iso')
        }
    }
    BeforeEach {
        if ($script:SkipReason) { Set-ItResult -Skipped -Because $script:SkipReason }
        $script:Remote = @{ HostName = $script:H2; UserName = 'root'; KeyFilePath = $script:Key }
    }

    It 'New-KvmVm and Set-KvmVm create and change a VM there; Get-/Set-KvmFirmware and Invoke-KvmBalloon read and change it' {
        $remote = $script:Remote
        $vm = New-KvmVm -Name remote-c -DvdPath $script:Iso -ProcessorCount 2 -MemoryStartupBytes 256MB -MemoryMinimumBytes 128MB -MemoryMaximumBytes 512MB `
            -BalloonEnabled -Notes 'made from afar' @remote -Confirm:$false -ErrorAction Stop
        $vm | Should -BeOfType ([KvmPS.PowerShell.KvmRemoteVm])
        $vm.HostName | Should -Be $script:H2
        $vm.ProcessorCount | Should -Be 2
        Get-KvmVm -Name remote-c -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $definition = Get-KvmTestRemoteDefinition remote-c
        $definition.Notes | Should -Be 'made from afar'
        $definition.DvdDrives[0].Path | Should -Be $script:Iso
        # -Definition goes there too; a name taken there is that host's refusal, naming it.
        (New-KvmVm -Definition @{ Name = 'remote-d'; MemoryStartupBytes = 128MB } @remote -Confirm:$false -ErrorAction Stop).HostName | Should -Be $script:H2
        New-KvmVm -Name remote-d @remote -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be 'RemoteCommandFailed,KvmPS.Commands.NewKvmVmCommand'
        "$($err[0])" | Should -BeLike "*host 'root@$($script:H2)'*remote-d*already exists*"
        New-KvmVm -Name remote-e @remote -WhatIf
        Get-KvmVm -Name remote-e @remote -ErrorAction SilentlyContinue | Should -BeNullOrEmpty

        # Piped: the VM brings its host.
        $set = Get-KvmVm -Name remote-c @remote | Set-KvmVm -Autostart $true -Notes 'changed' -ProcessorCount 1 -PassThru -Confirm:$false -ErrorAction Stop
        $set | Should -BeOfType ([KvmPS.PowerShell.KvmRemoteVm])
        $set.Autostart | Should -BeTrue
        $set.Notes | Should -Be 'changed'
        $set.ProcessorCount | Should -Be 1
        Set-KvmVm -Name remote-c -ProcessorCount 9 -MaximumProcessorCount 4 @remote -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be 'RemoteCommandFailed,KvmPS.Commands.SetKvmVmCommand'
        (Get-KvmTestRemoteDefinition remote-c).Vcpus.Count | Should -Be 1

        Set-KvmFirmware -Name remote-c -BootOrder Dvd, Disk -BootOnce Network @remote -Confirm:$false -ErrorAction Stop
        $firmware = Set-KvmFirmware -Name remote-c -FirstBootDevice Network @remote -PassThru -Confirm:$false -ErrorAction Stop
        $firmware.PSObject.TypeNames[0] | Should -Be 'KvmPS.RemoteFirmware'
        $firmware.HostName | Should -Be $script:H2
        $firmware.BootOrder | Should -Be @('Network', 'Dvd', 'Disk')
        $firmware.BootOnce | Should -Be 'Network'
        $read = Get-KvmFirmware -Name remote-c @remote -ErrorAction Stop
        $read.VmName | Should -Be 'remote-c'
        $read.FirstBootDevice | Should -Be 'Network'
        (Get-KvmTestRemoteDefinition remote-c).BootOrder | Should -Be @('Network', 'Dvd', 'Disk')
        # A kernel-booted VM there has no boot order: that host's refusal.
        Set-KvmFirmware -Name remote-d -BootOrder Disk @remote -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be 'RemoteCommandFailed,KvmPS.Commands.SetKvmFirmwareCommand'

        $memory = Invoke-KvmBalloon -Name remote-c -TargetBytes 192MB @remote -Confirm:$false -ErrorAction Stop
        $memory.PSObject.TypeNames[0] | Should -Be 'KvmPS.RemoteVmMemoryStatus'
        $memory.HostName | Should -Be $script:H2
        $memory.TargetBytes | Should -Be 192MB
        $memory.MinimumBytes | Should -Be 128MB
        (Get-KvmTestRemoteDefinition remote-c).Memory.StartupBytes | Should -Be 192MB
        # Without -TargetBytes: the status only.
        (Invoke-KvmBalloon -Name remote-c @remote -ErrorAction Stop).TargetBytes | Should -Be 192MB
        Invoke-KvmBalloon -Name remote-c -TargetBytes 64MB @remote -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be 'RemoteCommandFailed,KvmPS.Commands.InvokeKvmBalloonCommand'
        (Get-KvmTestRemoteDefinition remote-c).Memory.StartupBytes | Should -Be 192MB
    }

    It 'Add-, Get-, Set- and Remove-KvmDvdDrive act on the drives there; the drives pipe on to that host' {
        $remote = $script:Remote
        $added = Add-KvmDvdDrive -Name remote-c @remote -PassThru -Confirm:$false -ErrorAction Stop
        $added.PSObject.TypeNames[0] | Should -Be 'KvmPS.RemoteDvdDrive'
        $added.ControllerLocation | Should -Be 1
        $added.Path | Should -BeNullOrEmpty
        $added.HostName | Should -Be $script:H2
        $drives = @(Get-KvmDvdDrive -Name remote-c @remote -ErrorAction Stop)
        $drives | Should -HaveCount 2
        $drives[0].Path | Should -Be $script:Iso
        @(Get-KvmDvdDrive -Name remote-c -ControllerLocation 1 @remote).ControllerLocation | Should -Be @(1)

        (Set-KvmDvdDrive -Name remote-c -ControllerLocation 1 -Path $script:Iso @remote -PassThru -Confirm:$false -ErrorAction Stop).Path | Should -Be $script:Iso
        Set-KvmDvdDrive -Name remote-c -ControllerLocation 0 -Eject @remote -Confirm:$false -ErrorAction Stop
        (Get-KvmTestRemoteDefinition remote-c).DvdDrives.Path | Should -Be @($null, $script:Iso)

        # Two drives: which one is the caller's to say (that host's refusal); piped, the drive says it.
        Remove-KvmDvdDrive -Name remote-c @remote -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be 'RemoteCommandFailed,KvmPS.Commands.RemoveKvmDvdDriveCommand'
        "$($err[0])" | Should -BeLike '*2 DVD drives*'
        Get-KvmDvdDrive -Name remote-c @remote | Where-Object ControllerLocation -eq 0 | Remove-KvmDvdDrive -Confirm:$false -ErrorAction Stop
        $left = @((Get-KvmTestRemoteDefinition remote-c).DvdDrives)
        $left | Should -HaveCount 1
        $left[0].Path | Should -Be $script:Iso
    }

    It 'Add- and Remove-KvmPciPassthrough change the devices of the VM there, each refusal naming its device' {
        $remote = $script:Remote
        $socket = Join-Path $script:Pair.Host2.StoreHome 'dev.sock'
        $vm = Add-KvmPciPassthrough -Name remote-c -VfioUserSocket $socket @remote -PassThru -Confirm:$false -ErrorAction Stop
        $vm | Should -BeOfType ([KvmPS.PowerShell.KvmRemoteVm])
        $vm.HostName | Should -Be $script:H2
        (Get-KvmTestRemoteDefinition remote-c).VfioUserDevices | Should -Be @($socket)
        # The socket again, and a function h2 does not have: each refused there, naming it; nothing else changes.
        Add-KvmPciPassthrough -Name remote-c -VfioUserSocket $socket -Address '0000:0a:00.0' @remote -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
        $err | Should -HaveCount 2
        $err | ForEach-Object { $_.FullyQualifiedErrorId | Should -Be 'RemoteCommandFailed,KvmPS.Commands.AddKvmPciPassthroughCommand' }
        ($err | ForEach-Object { "$_" }) -join "`n" | Should -BeLike '*0000:0a:00.0*'
        ($err | ForEach-Object { "$_" }) -join "`n" | Should -BeLike "*already has vfio-user device*"
        (Get-KvmTestRemoteDefinition remote-c).PciPassthrough | Should -BeNullOrEmpty

        Get-KvmVm -Name remote-c @remote | Remove-KvmPciPassthrough -VfioUserSocket $socket -Confirm:$false -ErrorAction Stop
        (Get-KvmTestRemoteDefinition remote-c).VfioUserDevices | Should -BeNullOrEmpty
        Remove-KvmPciPassthrough -Name remote-c -VfioUserSocket $socket @remote -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be 'RemoteCommandFailed,KvmPS.Commands.RemoveKvmPciPassthroughCommand'
    }

    It 'Get-KvmHostPciDevice and Set-KvmHostSriov read and change the PCI functions of that host' {
        $remote = $script:Remote
        $all = @(Get-KvmHostPciDevice @remote -ErrorAction Stop)
        # (ForEach-Object: an array's own Address method hides member enumeration of .Address)
        $all | ForEach-Object Address | Should -Be @('0000:00:1f.0', '0000:03:00.0')
        $all[0].PSObject.TypeNames[0] | Should -Be 'KvmPS.RemotePciHostDevice'
        $all | ForEach-Object { $_.HostName | Should -Be $script:H2 }
        (Get-KvmHostPciDevice -Driver ixgbe @remote).Address | Should -Be '0000:03:00.0'
        Get-KvmHostPciDevice -Address '0000:03:*', '0000:0a:00.0' @remote -ErrorVariable err -ErrorAction SilentlyContinue | ForEach-Object Address | Should -Be @('0000:03:00.0')
        $err[0].FullyQualifiedErrorId | Should -Be 'HostDeviceNotFound,KvmPS.Commands.GetKvmHostPciDeviceCommand'

        $numvfs = Join-Path $script:Sysfs 'bus/pci/devices/0000:03:00.0/sriov_numvfs'
        $pf = @(Set-KvmHostSriov -Device '0000:03:00.0' -VfCount 4 @remote -PassThru -Confirm:$false -ErrorAction Stop)[0]
        (Get-Content $numvfs).Trim() | Should -Be '4'
        $pf.Address | Should -Be '0000:03:00.0'
        $pf.SriovNumVfs | Should -Be 4
        $pf.HostName | Should -Be $script:H2
        # Piped: the address and the host come with the device.
        Get-KvmHostPciDevice -Address '0000:03:00.0' @remote | Set-KvmHostSriov -VfCount 2 -Confirm:$false -ErrorAction Stop
        (Get-Content $numvfs).Trim() | Should -Be '2'
        Set-KvmHostSriov -Device '0000:03:00.0' -VfCount 9 @remote -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be 'RemoteCommandFailed,KvmPS.Commands.SetKvmHostSriovCommand'
        "$($err[0])" | Should -BeLike '*at most 8*'
        (Get-Content $numvfs).Trim() | Should -Be '2'
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
