#Requires -Version 7.4
# New-KvmVm: creation from parameters and from a definition, defaults, -WhatIf, -AsJob, bad input and help.

BeforeDiscovery {
    # Every C0 control character and DEL, in the middle and at the end of a name.
    $script:controlNames = foreach ($code in @(0..31) + 127) {
        @{ Code = $code; Text = "vm$([char]$code)x" }
        @{ Code = $code; Text = "vm$([char]$code)" }
    }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
}

AfterAll { Complete-KvmTest }

Describe 'New-KvmVm' {
    Context 'creating VMs' {
        It 'stores a VM that is Off, with the settings given' {
            $vm = New-KvmVm -Name new-a -MemoryStartupBytes 64MB -MemoryMinimumBytes 32MB -MemoryMaximumBytes 128MB `
                -ProcessorCount 2 -MaximumProcessorCount 4 -BalloonEnabled -Autostart -Notes 'first'
            $vm | Should -BeOfType ([KvmPS.PowerShell.KvmVm])
            $vm.Name | Should -Be 'new-a'
            $vm.State | Should -Be 'Off'
            $vm.ProcessorCount | Should -Be 2
            $vm.MaximumProcessorCount | Should -Be 4
            $vm.MemoryStartupBytes | Should -Be 64MB
            $vm.MemoryMinimumBytes | Should -Be 32MB
            $vm.MemoryMaximumBytes | Should -Be 128MB
            $vm.BalloonEnabled | Should -BeTrue
            $vm.Autostart | Should -BeTrue
            $vm.Notes | Should -Be 'first'
            (Get-KvmVm new-a).Notes | Should -Be 'first'
            Test-Path -LiteralPath $vm.Path | Should -BeTrue
        }

        It 'defaults to 1 vCPU and 256 MB of fixed memory on the built-in guest' {
            $vm = New-KvmVm -Name new-defaults
            $vm.ProcessorCount | Should -Be 1
            $vm.MaximumProcessorCount | Should -Be 1
            $vm.MemoryStartupBytes | Should -Be 256MB
            $vm.MemoryMinimumBytes | Should -Be 256MB
            $vm.MemoryMaximumBytes | Should -Be 256MB
            $vm.BalloonEnabled | Should -BeFalse
        }

        It 'creates a VM that starts on the built-in guest' {
            New-KvmVm -Name new-run -MemoryStartupBytes 64MB | Start-KvmVm
            (Get-KvmVm new-run).State | Should -Be 'Running'
            Stop-KvmVm new-run -TurnOff
        }

        It 'takes Name (or VMName) from the pipeline by property name' {
            ([pscustomobject]@{ Name = 'new-prop' } | New-KvmVm -MemoryStartupBytes 64MB).Name | Should -Be 'new-prop'
            ([pscustomobject]@{ VMName = 'new-prop2' } | New-KvmVm -MemoryStartupBytes 64MB).Name | Should -Be 'new-prop2'
        }

        It 'takes a definition hashtable by name: -Definition' {
            $vm = New-KvmVm -Definition @{ Name = 'new-def0'; MemoryStartupBytes = 64MB; VcpuCount = 2 }
            $vm.Name | Should -Be 'new-def0'
            $vm.ProcessorCount | Should -Be 2
        }

        # Help example 3 (Import-PowerShellDataFile ./db.psd1 | New-KvmVm): the binder never tries -Definition.
        It 'takes a definition hashtable with the manifest keys, by value from the pipeline' -Tag 'NewDefect' {
            $vm = @{ Name = 'new-def'; MemoryStartupBytes = 64MB; VcpuCount = 2; VcpuMaximum = 3; Notes = 'from a definition' } | New-KvmVm
            $vm.Name | Should -Be 'new-def'
            $vm.ProcessorCount | Should -Be 2
            $vm.MaximumProcessorCount | Should -Be 3
            $vm.Notes | Should -Be 'from a definition'
        }

        It 'rejects a definition with an unknown key, naming it' {
            New-KvmVm -Definition @{ Name = 'new-bad'; MemoryStartupBytes = 64MB; Vcpus = 2 } -ErrorVariable err -ErrorAction SilentlyContinue
            $err.Count | Should -Be 1
            $err[0].FullyQualifiedErrorId | Should -BeLike '*,KvmPS.Commands.NewKvmVmCommand'
            $err[0].FullyQualifiedErrorId | Should -Not -BeLike 'UnexpectedError,*'
            $err[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
            "$($err[0])" | Should -Match 'Vcpus'
            Get-KvmVm new-bad -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        }

        It '-Confirm:$false creates without asking' {
            (New-KvmVm -Name new-confirm -MemoryStartupBytes 64MB -Confirm:$false).Name | Should -Be 'new-confirm'
        }
    }

    Context '-WhatIf and -AsJob' {
        It '-WhatIf creates nothing and says what it would create' {
            $lines = Get-KvmWhatIfLine { New-KvmVm -Name new-whatif -MemoryStartupBytes 64MB -ProcessorCount 2 -WhatIf }
            @($lines).Count | Should -Be 1
            $lines | Should -Match 'new-whatif'
            $lines | Should -Match '2 vCPUs'
            Get-KvmVm new-whatif -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
            Test-Path (Join-Path $env:KVMPS_HOME 'vms/new-whatif') | Should -BeFalse
        }

        It '-WhatIf with one vCPU does not say "1 vCPUs"' -Tag 'Issue9' {
            $lines = Get-KvmWhatIfLine { New-KvmVm -Name new-whatif1 -MemoryStartupBytes 64MB -WhatIf }
            $lines | Should -Match 'new-whatif1'
            $lines | Should -Not -Match '\b1 vCPUs'
        }

        It '-AsJob returns a job whose output is the new VM' {
            $job = New-KvmVm -Name new-job -MemoryStartupBytes 64MB -AsJob
            $job | Should -BeOfType ([System.Management.Automation.Job])
            $vm = $job | Receive-Job -Wait -AutoRemoveJob
            $vm.Name | Should -Be 'new-job'
            $vm.State | Should -Be 'Off'
            (Get-KvmVm new-job).Name | Should -Be 'new-job'
        }
    }

    Context 'errors' {
        It 'reports a name that exists as ResourceExists' {
            New-KvmVm -Name new-dup -MemoryStartupBytes 64MB | Out-Null
            New-KvmVm -Name new-dup -MemoryStartupBytes 64MB -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
            Assert-KvmError $err -ErrorId VmAlreadyExists -Command New-KvmVm -Category ResourceExists -TargetObject 'new-dup'
        }

        It 'rejects -ProcessorCount above -MaximumProcessorCount naming those parameters' -Tag 'Issue9' {
            New-KvmVm -Name new-cpu -ProcessorCount 4 -MaximumProcessorCount 2 -ErrorVariable err -ErrorAction SilentlyContinue
            $err.Count | Should -Be 1
            $err[0].FullyQualifiedErrorId | Should -Not -BeLike 'UnexpectedError,*'
            $err[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
            "$($err[0])" | Should -Match '\bProcessorCount\b'
            "$($err[0])" | Should -Match '\bMaximumProcessorCount\b'
            "$($err[0])" | Should -Not -Match 'VcpuCount|VcpuMaximum'
            Get-KvmVm new-cpu -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        }

        It 'rejects -KernelArguments without -KernelPath' {
            New-KvmVm -Name new-args -KernelArguments 'quiet' -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
            "$($err[0])" | Should -Match 'KernelPath'
            Get-KvmVm new-args -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        }

        It 'rejects memory below 4096 bytes at binding' {
            { New-KvmVm -Name new-tiny -MemoryStartupBytes 100 -ErrorAction Stop } |
                Should -Throw -ErrorId 'ParameterArgumentValidationError,KvmPS.Commands.NewKvmVmCommand'
        }

        It 'rejects a name with a trailing newline, naming -Name' -Tag 'Issue9' {
            $before = @(Get-ChildItem (Join-Path $env:KVMPS_HOME 'vms') -Name)
            New-KvmVm -Name "vm1`n" -MemoryStartupBytes 64MB -ErrorVariable err -ErrorAction SilentlyContinue
            $err.Count | Should -Be 1
            $err[0].FullyQualifiedErrorId | Should -Not -BeLike 'UnexpectedError,*'
            $err[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
            "$($err[0])" | Should -Match '\bName\b'
            "$($err[0])" | Should -Match ([regex]::Escape("VM 'vm1\n'")) -Because 'the newline is shown escaped, not breaking the line'
            (Get-KvmVm).Name | Should -Not -Contain 'vm1'
            (Get-KvmVm).Name | Should -Not -Contain "vm1`n"
            @(Get-ChildItem (Join-Path $env:KVMPS_HOME 'vms') -Name) | Should -Be $before -Because 'no VM folder may be created'
            Get-KvmVm "vm1`n" -ErrorAction SilentlyContinue | Remove-KvmVm -Force -Confirm:$false
        }

        It 'rejects a name with control character <Code>' -ForEach $controlNames -Tag 'Issue9' {
            $before = @(Get-ChildItem (Join-Path $env:KVMPS_HOME 'vms') -Name)
            New-KvmVm -Name $Text -MemoryStartupBytes 64MB -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
            $err.Count | Should -BeGreaterThan 0
            $err[0].FullyQualifiedErrorId | Should -Not -BeLike 'UnexpectedError,*'
            "$($err[0])" | Should -Match '\bName\b'
            @(Get-ChildItem (Join-Path $env:KVMPS_HOME 'vms') -Name) | Should -Be $before -Because 'no VM folder may be created'
        }
    }

    Context 'confinement' -Tag 'Issue17' {
        It 'stores the log limits given and passes them to the VMM' {
            $vm = New-KvmVm -Name 'logs1' -MemoryStartupBytes 64MB -LogMaxBytes 64KB -LogFileCount 2
            $json = Get-Content -Raw (Join-Path $env:KVMPS_HOME 'vms/logs1/vm.json') | ConvertFrom-Json
            $json.logMaxBytes | Should -Be 65536
            $json.logFileCount | Should -Be 2
            Set-KvmVm -Name 'logs1' -LogMaxBytes 0
            (Get-Content -Raw (Join-Path $env:KVMPS_HOME 'vms/logs1/vm.json') | ConvertFrom-Json).logMaxBytes | Should -Be 0
        }

        It 'refuses a log limit below 4096 bytes naming -LogMaxBytes' {
            New-KvmVm -Name 'logs2' -MemoryStartupBytes 64MB -LogMaxBytes 100 -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
            "$($err[0])" | Should -Match 'LogMaxBytes'
        }

        It 'refuses a kernel outside the store and the allowed folders, naming the path and the setting' {
            $saved = $env:KVMPS_ALLOWED_PATHS
            try {
                $env:KVMPS_ALLOWED_PATHS = '/nonexistent-allowed'
                New-KvmVm -Name 'outside' -MemoryStartupBytes 64MB -KernelPath '/etc/passwd' -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
                $err.Count | Should -BeGreaterThan 0
                "$($err[0])" | Should -Match '/etc/passwd'
                "$($err[0])" | Should -Match 'KVMPS_ALLOWED_PATHS'
                $err[0].CategoryInfo.Category | Should -Be 'PermissionDenied'
                Test-Path (Join-Path $env:KVMPS_HOME 'vms/outside') | Should -BeFalse
            }
            finally { $env:KVMPS_ALLOWED_PATHS = $saved }
        }

        It 'creates the store and the VM folder owner-only' {
            New-KvmVm -Name 'modes' -MemoryStartupBytes 64MB | Out-Null
            $ownerOnlyFolder = [System.IO.UnixFileMode]'UserRead, UserWrite, UserExecute'
            (Get-Item $env:KVMPS_HOME).UnixFileMode | Should -Be $ownerOnlyFolder
            (Get-Item (Join-Path $env:KVMPS_HOME 'vms/modes')).UnixFileMode | Should -Be $ownerOnlyFolder
            (Get-Item (Join-Path $env:KVMPS_HOME 'vms/modes/vm.json')).UnixFileMode | Should -Be ([System.IO.UnixFileMode]'UserRead, UserWrite')
        }
    }

    Context 'help' {
        It 'has full help' {
            Assert-KvmHelp New-KvmVm | Out-Null
        }

        It 'documents the defaults of -ProcessorCount (1) and -MemoryStartupBytes (256 MB)' -Tag 'Issue9' {
            (Get-Help New-KvmVm -Parameter ProcessorCount).defaultValue | Should -Be '1'
            (Get-Help New-KvmVm -Parameter MemoryStartupBytes).defaultValue | Should -Match '^(256 ?MB|268435456)'
        }
    }
}

Describe 'New-KvmVm -DvdPath (install from an ISO)' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot 'DvdTestHelpers.psm1') -Force
        $script:installIso = New-KvmTestIso (Join-Path $env:KVMPS_HOME 'installer.iso')
    }

    It 'gives a DVD drive with the ISO, SeaBIOS booting Dvd then Disk, and a VNC display on the unix socket' {
        $vm = New-KvmVm -Name iso-a -DvdPath $installIso -Confirm:$false
        $vm.Name | Should -Be 'iso-a'
        (Get-KvmDvdDrive iso-a).Path | Should -Be $installIso
        $fw = Get-KvmFirmware iso-a
        $fw.BootOrder | Should -Be @('Dvd', 'Disk')
        $fw.Boot | Should -Match 'seabios'
        $vnc = Connect-KvmConsole iso-a -Graphics -WarningAction SilentlyContinue 6>$null
        $vnc.UnixPath | Should -Be (Join-Path $env:KVMPS_HOME 'vms/iso-a/vnc.sock')
        $vnc.Tcp | Should -BeNullOrEmpty
    }

    It '-Vnc adds a TCP listener; a non-loopback one without a password is refused naming it' {
        New-KvmVm -Name iso-b -DvdPath $installIso -Vnc 127.0.0.1:5951 -Confirm:$false | Out-Null
        (Connect-KvmConsole iso-b -Graphics -WarningAction SilentlyContinue 6>$null).Tcp | Should -Be '127.0.0.1:5951'
        { New-KvmVm -Name iso-c -DvdPath $installIso -Vnc 0.0.0.0:5952 -Confirm:$false -ErrorAction Stop } | Should -Throw '*Display.Vnc*listens beyond this host*'
    }

    It 'refuses a file that is not an ISO, and -DvdPath with -KernelPath' {
        $bad = New-KvmTestIso (Join-Path $env:KVMPS_HOME 'bad.iso') -NotIso
        New-KvmVm -Name iso-d -DvdPath $bad -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
        "$($err[0])" | Should -Match 'is not an ISO 9660 image'
        Get-KvmVm iso-d -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        { New-KvmVm -Name iso-e -DvdPath $installIso -KernelPath /boot/vmlinuz -Confirm:$false -ErrorAction Stop } | Should -Throw '*-KernelPath*'
    }
}
