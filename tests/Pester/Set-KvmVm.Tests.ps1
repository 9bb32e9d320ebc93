#Requires -Version 7.4
# Set-KvmVm: stored settings, restart rules for a running VM, pipeline, -PassThru, -WhatIf, errors naming parameters.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    New-KvmTestVm -Name set-a | Out-Null
    New-KvmTestVm -Name set-b | Out-Null
    New-KvmTestVm -Name set-run -Start | Out-Null
}

AfterAll { Complete-KvmTest }

Describe 'Set-KvmVm' {
    It 'changes the stored settings of a VM that is off and outputs nothing' {
        Set-KvmVm set-a -ProcessorCount 2 -MaximumProcessorCount 4 -MemoryStartupBytes 96MB -Notes 'changed' -Autostart $true -BalloonEnabled $true |
            Should -BeNullOrEmpty
        $vm = Get-KvmVm set-a
        $vm.ProcessorCount | Should -Be 2
        $vm.MaximumProcessorCount | Should -Be 4
        $vm.MemoryStartupBytes | Should -Be 96MB
        $vm.MemoryMinimumBytes | Should -Be 96MB -Because 'a fixed-size VM stays fixed-size'
        $vm.MemoryMaximumBytes | Should -Be 96MB
        $vm.Notes | Should -Be 'changed'
        $vm.Autostart | Should -BeTrue
        $vm.BalloonEnabled | Should -BeTrue
    }

    It '-PassThru outputs the changed VM' {
        (Set-KvmVm set-a -Notes 'passthru' -PassThru).Notes | Should -Be 'passthru'
    }

    It 'takes VM objects by value and names by property name' {
        (Get-KvmVm set-a, set-b | Set-KvmVm -Notes 'piped' -PassThru).Notes | Should -Be @('piped', 'piped')
        ([pscustomobject]@{ Name = 'set-b' } | Set-KvmVm -Notes 'by name' -PassThru).Notes | Should -Be 'by name'
        ([pscustomobject]@{ VMName = 'set-a' } | Set-KvmVm -Notes 'by vmname' -PassThru).Notes | Should -Be 'by vmname'
    }

    It 'stores a change a running VM cannot take live and warns that it needs a restart' {
        Set-KvmVm set-run -MemoryStartupBytes 96MB -WarningVariable warnings -WarningAction SilentlyContinue
        $vm = Get-KvmVm set-run
        $vm.MemoryStartupBytes | Should -Be 96MB
        $vm.MemoryAssignedBytes | Should -Be 64MB
        "$warnings" | Should -Match 'restart'
    }

    It '-RestartIfNeeded restarts the VM to apply the change' {
        Set-KvmVm set-run -MemoryStartupBytes 128MB -RestartIfNeeded -Confirm:$false -WarningVariable warnings
        $warnings | Should -BeNullOrEmpty
        $vm = Get-KvmVm set-run
        $vm.State | Should -Be 'Running'
        $vm.MemoryAssignedBytes | Should -Be 128MB
    }

    It 'applies Notes to a running VM without a warning' {
        Set-KvmVm set-run -Notes 'live' -WarningVariable warnings
        $warnings | Should -BeNullOrEmpty
        (Get-KvmVm set-run).Notes | Should -Be 'live'
    }

    It '-WhatIf changes nothing' {
        $lines = Get-KvmWhatIfLine { Set-KvmVm set-a -Notes 'whatif' -WhatIf }
        $lines | Should -Match 'target "set-a"'
        (Get-KvmVm set-a).Notes | Should -Not -Be 'whatif'
    }

    It 'rejects -ProcessorCount above -MaximumProcessorCount naming those parameters' -Tag 'Issue9' {
        Set-KvmVm set-b -ProcessorCount 4 -MaximumProcessorCount 2 -ErrorVariable err -ErrorAction SilentlyContinue
        $err.Count | Should -Be 1
        $err[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
        $err[0].TargetObject | Should -Not -BeNullOrEmpty
        "$($err[0])" | Should -Match '\bProcessorCount\b'
        "$($err[0])" | Should -Match '\bMaximumProcessorCount\b'
        "$($err[0])" | Should -Not -Match 'VcpuCount|VcpuMaximum'
        (Get-KvmVm set-b).ProcessorCount | Should -Be 1
    }

    It 'rejects a minimum above the startup memory, naming -MemoryMinimumBytes' {
        Set-KvmVm set-b -MemoryMinimumBytes 128MB -ErrorVariable err -ErrorAction SilentlyContinue
        $err.Count | Should -Be 1
        $err[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
        "$($err[0])" | Should -Match 'MemoryMinimumBytes'
        (Get-KvmVm set-b).MemoryMinimumBytes | Should -Be 64MB
    }

    It 'rejects -KernelArguments without a kernel' {
        Set-KvmVm set-b -KernelArguments 'quiet' -ErrorVariable err -ErrorAction SilentlyContinue
        $err.Count | Should -Be 1
        $err[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
        "$($err[0])" | Should -Match 'KernelPath'
        $err[0].TargetObject | Should -Not -BeNullOrEmpty
    }

    It 'reports a missing VM as ObjectNotFound; a wildcard matching nothing is silent' {
        Set-KvmVm nosuch -Notes x -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId VmNotFound -Command Set-KvmVm -Category ObjectNotFound -TargetObject 'nosuch'
        Set-KvmVm 'nosuch*' -Notes x -ErrorVariable err
        $err | Should -BeNullOrEmpty
    }

    It 'has full help' {
        Assert-KvmHelp Set-KvmVm | Out-Null
    }

    It 'completes VM names' {
        Get-KvmCompletion 'Set-KvmVm -Name set-r' | Should -Be @('set-run')
    }
}
