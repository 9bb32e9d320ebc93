#Requires -Version 7.4
# Set-KvmMemory: startup, minimum and maximum memory; validation naming parameters; running VMs; pipeline, -WhatIf, help.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    New-KvmTestVm -Name mem-a | Out-Null
    New-KvmTestVm -Name mem-b | Out-Null
    New-KvmVm -Name mem-run -MemoryStartupBytes 64MB -MemoryMaximumBytes 256MB | Start-KvmVm
}

AfterAll { Complete-KvmTest }

Describe 'Set-KvmMemory' {
    It 'sets startup, minimum and maximum of a VM that is off, and outputs nothing' {
        Set-KvmMemory mem-a -StartupBytes 128MB -MinimumBytes 64MB -MaximumBytes 512MB | Should -BeNullOrEmpty
        $vm = Get-KvmVm mem-a
        $vm.MemoryStartupBytes | Should -Be 128MB
        $vm.MemoryMinimumBytes | Should -Be 64MB
        $vm.MemoryMaximumBytes | Should -Be 512MB
    }

    It 'takes the startup memory by position and the New-KvmVm names as aliases' {
        Set-KvmMemory mem-b 96MB
        (Get-KvmVm mem-b).MemoryStartupBytes | Should -Be 96MB
        (Get-KvmVm mem-b).MemoryMaximumBytes | Should -Be 96MB -Because 'a fixed-size VM stays fixed-size'
        Set-KvmMemory mem-b -MemoryMaximumBytes 256MB
        (Get-KvmVm mem-b).MemoryMaximumBytes | Should -Be 256MB
    }

    It 'refuses a maximum above the startup memory that is not a multiple of 2 MiB, changing nothing' {
        Set-KvmMemory mem-b -MaximumBytes (256MB + 1MB) -ErrorVariable err -ErrorAction SilentlyContinue
        $err.Count | Should -Be 1
        $err[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
        "$($err[0])" | Should -Match '-MaximumBytes'
        "$($err[0])" | Should -Match '2 MiB'
        (Get-KvmVm mem-b).MemoryMaximumBytes | Should -Be 256MB
    }

    It 'refuses a maximum below the startup memory naming -MaximumBytes' {
        Set-KvmMemory mem-b -MaximumBytes 32MB -ErrorVariable err -ErrorAction SilentlyContinue
        $err.Count | Should -Be 1
        "$($err[0])" | Should -Match '-MaximumBytes'
        (Get-KvmVm mem-b).MemoryMaximumBytes | Should -Be 256MB
    }

    It 'resizes a running VM live within its maximum (virtio-mem), in the same VMM, and stores it' {
        New-KvmVm -Name mem-live -MemoryStartupBytes 256MB -MemoryMaximumBytes 1GB | Start-KvmVm
        $before = Get-KvmVm mem-live
        $vm = Set-KvmMemory mem-live -StartupBytes 512MB -PassThru -WarningVariable warnings
        $warnings | Should -BeNullOrEmpty -Because 'memory within the maximum needs no restart'
        $vm.MemoryStartupBytes | Should -Be 512MB
        $vm.MemoryDemandBytes | Should -Be 512MB -Because 'the VMM was asked for 512 MiB (memory.get requested_bytes)'
        $vm.ProcessId | Should -Be $before.ProcessId
        $vm.State | Should -Be 'Running'
        ($vm | Format-List | Out-String) | Should -Match 'MemoryDemand\s*:\s*512 MiB'
    }

    It 'refuses memory beyond the maximum a running VM was started with, naming it, and changes nothing' {
        $before = Get-KvmVm mem-live
        Set-KvmMemory mem-live -StartupBytes 2GB -ErrorVariable err -ErrorAction SilentlyContinue
        $err.Count | Should -Be 1
        "$($err[0])" | Should -Match 'maximum memory of 1GB'
        $after = Get-KvmVm mem-live
        $after.MemoryStartupBytes | Should -Be 512MB
        $after.MemoryDemandBytes | Should -Be 512MB
        $after.ProcessId | Should -Be $before.ProcessId
        Remove-KvmTestVm mem-live
    }

    It 'stores a change a running VM cannot take live and warns that it needs a restart' {
        $before = Get-KvmVm mem-run
        $vm = Set-KvmMemory mem-run -StartupBytes 128MB -MaximumBytes 512MB -PassThru -WarningVariable warnings -WarningAction SilentlyContinue
        $vm.MemoryStartupBytes | Should -Be 128MB
        $vm.ProcessId | Should -Be $before.ProcessId
        $vm.State | Should -Be 'Running'
        "$warnings" | Should -Match 'restart' -Because 'a new maximum only takes effect at the next start'
    }

    It 'needs at least one size' {
        { Set-KvmMemory mem-b -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidValue,KvmPS.Commands.SetKvmMemoryCommand'
    }

    It 'takes VM objects by value; -WhatIf changes nothing' {
        Get-KvmVm mem-a | Set-KvmMemory -StartupBytes 64MB
        (Get-KvmVm mem-a).MemoryStartupBytes | Should -Be 64MB
        $lines = Get-KvmWhatIfLine { Set-KvmMemory mem-a -StartupBytes 256MB -WhatIf }
        $lines | Should -Match 'target "mem-a"'
        $lines | Should -Match '256 MiB'
        (Get-KvmVm mem-a).MemoryStartupBytes | Should -Be 64MB
    }

    It 'reports a missing VM as ObjectNotFound' {
        Set-KvmMemory nosuch -StartupBytes 64MB -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId VmNotFound -Command Set-KvmMemory -Category ObjectNotFound -TargetObject 'nosuch'
    }

    It 'has full help' {
        Assert-KvmHelp Set-KvmMemory | Out-Null
    }
}

Describe 'Set-KvmMemory -VmmOverheadLimitBytes' {
    It 'stores the limit alone, Get-KvmVm shows it, and 0 removes it' {
        Set-KvmMemory mem-b -VmmOverheadLimitBytes 32MB | Should -BeNullOrEmpty
        $vm = Get-KvmVm mem-b
        $vm.VmmOverheadLimitBytes | Should -Be 32MB
        $vm.MemoryMaximumBytes | Should -Be 256MB -Because 'the memory sizes are left as they were'
        Set-KvmMemory mem-b -VmmOverheadLimitBytes 0
        (Get-KvmVm mem-b).VmmOverheadLimitBytes | Should -Be 0
    }

    It 'refuses a limit below 16 MiB naming -VmmOverheadLimitBytes and the value' {
        Set-KvmMemory mem-b -VmmOverheadLimitBytes 4096 -ErrorVariable err -ErrorAction SilentlyContinue
        $err.Count | Should -Be 1
        $err[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
        "$($err[0])" | Should -Match '-VmmOverheadLimitBytes'
        "$($err[0])" | Should -Match '4096'
        (Get-KvmVm mem-b).VmmOverheadLimitBytes | Should -Be 0
    }

    It 'limits a started VM''s cgroup to its maximum memory plus the overhead' {
        New-KvmVm -Name mem-lim -MemoryStartupBytes 64MB -MemoryMaximumBytes 128MB | Out-Null
        Set-KvmMemory mem-lim -VmmOverheadLimitBytes 64MB
        Start-KvmVm mem-lim
        $vmmPid = (Get-KvmVm mem-lim).ProcessId
        $line = Get-Content "/proc/$vmmPid/cgroup" | Where-Object { $_ -match '^(0::|\d+:[^:]*memory[^:]*:).*/kvmps/mem-lim$' } | Select-Object -First 1
        $path = ($line -split ':', 3)[2]
        $file = @("/sys/fs/cgroup$path/memory.max", "/sys/fs/cgroup/unified$path/memory.max", "/sys/fs/cgroup/memory$path/memory.limit_in_bytes") | Where-Object { Test-Path $_ } | Select-Object -First 1
        [long](Get-Content $file) | Should -Be (128MB + 64MB)
        Set-KvmMemory mem-lim -VmmOverheadLimitBytes 96MB -WarningVariable warnings -WarningAction SilentlyContinue
        $warnings | Should -BeNullOrEmpty -Because 'it is written into the running VMM''s cgroup'
        [long](Get-Content $file) | Should -Be (128MB + 96MB)
        Stop-KvmVm mem-lim -Force
        Remove-KvmVm mem-lim -Force -Confirm:$false
    }
}
