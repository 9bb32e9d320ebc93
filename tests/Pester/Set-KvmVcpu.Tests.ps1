#Requires -Version 7.4
# Set-KvmVcpu: vCPU count and maximum, live hot-add, pipeline, -PassThru, -WhatIf, errors naming parameters.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    New-KvmTestVm -Name cpu-a | Out-Null
    New-KvmTestVm -Name cpu-b | Out-Null
    New-KvmTestVm -Name cpu-run -MaximumProcessorCount 4 -Start | Out-Null
}

AfterAll { Complete-KvmTest }

Describe 'Set-KvmVcpu' {
    It 'sets the count and the maximum of a VM that is off, and outputs nothing' {
        Set-KvmVcpu cpu-a -Count 2 -Maximum 4 | Should -BeNullOrEmpty
        $vm = Get-KvmVm cpu-a
        $vm.ProcessorCount | Should -Be 2
        $vm.MaximumProcessorCount | Should -Be 4
    }

    It 'takes the count by position and the Hyper-V names as aliases' {
        Set-KvmVcpu cpu-a 3
        (Get-KvmVm cpu-a).ProcessorCount | Should -Be 3
        Set-KvmVcpu cpu-a -ProcessorCount 1 -MaximumProcessorCount 2
        (Get-KvmVm cpu-a).ProcessorCount | Should -Be 1
        (Get-KvmVm cpu-a).MaximumProcessorCount | Should -Be 2
    }

    It '-PassThru outputs the VM' {
        (Set-KvmVcpu cpu-b -Count 1 -PassThru).Name | Should -Be 'cpu-b'
    }

    It 'adds vCPUs to a running VM live, in the same VMM, and stores the count' {
        $before = Get-KvmVm cpu-run
        $vm = Set-KvmVcpu cpu-run -Count 3 -PassThru -WarningVariable warnings -WarningAction SilentlyContinue
        $warnings | Should -BeNullOrEmpty -Because 'a count within the maximum needs no restart'
        $vm.ProcessorCount | Should -Be 3 -Because 'the running VMM reports three vCPUs'
        $vm.ProcessId | Should -Be $before.ProcessId
        $vm.State | Should -Be 'Running'
        (Get-KvmVm cpu-run).Definition.Vcpus.Count | Should -Be 3
    }

    It 'removes vCPUs from a running VM live and shows the vCPUs present once the guest ejected them' {
        New-KvmTestVm -Name cpu-four -ProcessorCount 4 -Start | Out-Null
        $before = Get-KvmVm cpu-four
        $before.ProcessorCount | Should -Be 4
        Set-KvmVcpu cpu-four -Count 2 -WarningVariable warnings
        $warnings | Should -BeNullOrEmpty
        $deadline = (Get-Date).AddSeconds(30)
        while ((Get-KvmVm cpu-four).ProcessorCount -ne 2 -and (Get-Date) -lt $deadline) { Start-Sleep -Milliseconds 200 }
        $vm = Get-KvmVm cpu-four
        $vm.ProcessorCount | Should -Be 2 -Because 'ejected vCPUs are not counted'
        $vm.ProcessId | Should -Be $before.ProcessId
        $vm.Definition.Vcpus.Count | Should -Be 2
        Remove-KvmTestVm cpu-four
    }

    It '-Config stores a count for the next start only; -Live on a VM that is off changes nothing' {
        $before = Get-KvmVm cpu-run
        Set-KvmVcpu cpu-run -Count 2 -Config -WarningAction SilentlyContinue
        $vm = Get-KvmVm cpu-run
        $vm.Definition.Vcpus.Count | Should -Be 2
        $vm.ProcessorCount | Should -Be $before.ProcessorCount -Because 'the running VMM keeps its vCPUs'
        Set-KvmVcpu cpu-run -Count $before.Definition.Vcpus.Count -Config -WarningAction SilentlyContinue
        Set-KvmVcpu cpu-a -Count 2 -Maximum 2 -Live -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId InvalidVmState -Command Set-KvmVcpu -Category InvalidOperation -TargetObject 'cpu-a'
        (Get-KvmVm cpu-a).ProcessorCount | Should -Be 1
        { Set-KvmVcpu cpu-a -Count 2 -Live -Config -ErrorAction Stop } | Should -Throw '*-Live or -Config, not both*'
    }

    It 'refuses a count beyond the maximum of a running VM, naming the limit, and leaves it unchanged' {
        $before = Get-KvmVm cpu-run
        Set-KvmVcpu cpu-run -Count 5 -ErrorVariable err -ErrorAction SilentlyContinue
        $err.Count | Should -Be 1
        "$($err[0])" | Should -Match 'maximum of 4'
        "$($err[0])" | Should -Match 'restart'
        $after = Get-KvmVm cpu-run
        $after.ProcessorCount | Should -Be $before.ProcessorCount
        $after.ProcessId | Should -Be $before.ProcessId
        $after.Definition.Vcpus.Count | Should -Be $before.Definition.Vcpus.Count
    }

    It 'stores a higher maximum for a running VM and warns that it needs a restart' {
        Set-KvmVcpu cpu-run -Maximum 6 -WarningVariable warnings -WarningAction SilentlyContinue
        "$warnings" | Should -Match '-Maximum.*restart'
        (Get-KvmVm cpu-run).MaximumProcessorCount | Should -Be 6
    }

    It 'takes VM objects by value and names by property name' {
        Get-KvmVm cpu-a, cpu-b | Set-KvmVcpu -Count 2 -Maximum 2
        (Get-KvmVm cpu-a, cpu-b).ProcessorCount | Should -Be @(2, 2)
        [pscustomobject]@{ VMName = 'cpu-b' } | Set-KvmVcpu -Count 1
        (Get-KvmVm cpu-b).ProcessorCount | Should -Be 1
    }

    It '-WhatIf changes nothing and reads naturally' {
        $lines = Get-KvmWhatIfLine { Set-KvmVcpu cpu-b -Count 2 -WhatIf }
        $lines | Should -Match 'target "cpu-b"'
        $lines | Should -Match '\b2\b'
        $lines | Should -Not -Match '\b1 vCPUs'
        (Get-KvmVm cpu-b).ProcessorCount | Should -Be 1
    }

    It 'needs -Count or -Maximum' {
        { Set-KvmVcpu cpu-b -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidValue,KvmPS.Commands.SetKvmVcpuCommand'
    }

    It 'rejects a count above the maximum naming -Count and -Maximum' -Tag 'Issue9' {
        Set-KvmVcpu cpu-b -Count 4 -Maximum 2 -ErrorVariable err -ErrorAction SilentlyContinue
        $err.Count | Should -Be 1
        $err[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
        $err[0].TargetObject | Should -Not -BeNullOrEmpty
        "$($err[0])" | Should -Match '\bCount\b'
        "$($err[0])" | Should -Match '\bMaximum\b'
        "$($err[0])" | Should -Not -Match 'VcpuCount|VcpuMaximum'
        (Get-KvmVm cpu-b).ProcessorCount | Should -Be 1
    }

    It 'does not claim a restart is needed to raise the maximum of a VM that is off' -Tag 'Issue9' {
        Set-KvmVcpu cpu-b -Count 9 -ErrorVariable err -ErrorAction SilentlyContinue
        $err.Count | Should -Be 1
        "$($err[0])" | Should -Match 'raise -Maximum too\)'
        "$($err[0])" | Should -Not -Match 'restart'
    }

    It 'rejects a count outside 1-255 at binding' {
        { Set-KvmVcpu cpu-b -Count 0 -ErrorAction Stop } | Should -Throw -ErrorId 'ParameterArgumentValidationError,KvmPS.Commands.SetKvmVcpuCommand'
    }

    It 'reports a missing VM as ObjectNotFound; a wildcard matching nothing is silent' {
        Set-KvmVcpu nosuch -Count 1 -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId VmNotFound -Command Set-KvmVcpu -Category ObjectNotFound -TargetObject 'nosuch'
        Set-KvmVcpu 'nosuch*' -Count 1 -ErrorVariable err
        $err | Should -BeNullOrEmpty
    }

    It 'has full help' {
        Assert-KvmHelp Set-KvmVcpu | Out-Null
    }

    It 'completes VM names' {
        Get-KvmCompletion 'Set-KvmVcpu cpu-' | Should -Be @('cpu-a', 'cpu-b', 'cpu-run')
    }
}

Describe 'Set-KvmVcpu -RelativeWeight -MaximumPercent' {
    BeforeAll {
        # The VMM's cgroup files as the kernel shows them (v2 cpu.weight/cpu.max, else v1 cpu.shares/cfs_quota_us).
        function Get-CpuLimit([int] $ProcessId, [string] $Vm) {
            foreach ($line in Get-Content "/proc/$ProcessId/cgroup") {
                $f = $line -split ':', 3
                if (-not $f[2].EndsWith("/kvmps/$Vm")) { continue }
                if ($f[0] -eq '0' -and $f[1] -eq '') {
                    foreach ($root in '/sys/fs/cgroup', '/sys/fs/cgroup/unified') {
                        if (Test-Path "$root$($f[2])/cpu.weight") {
                            return @{ Weight = [int](Get-Content "$root$($f[2])/cpu.weight"); Max = (Get-Content "$root$($f[2])/cpu.max").Trim() }
                        }
                    }
                }
                elseif (($f[1] -split ',') -contains 'cpu') {
                    $dir = "/sys/fs/cgroup/cpu$($f[2])"
                    return @{ Weight = [int](Get-Content "$dir/cpu.shares") * 100 / 1024; Max = "$((Get-Content "$dir/cpu.cfs_quota_us").Trim()) $((Get-Content "$dir/cpu.cfs_period_us").Trim())" }
                }
            }
            throw "VMM $ProcessId has no cgroup kvmps/$Vm"
        }
    }

    It 'stores the weight and the cap of a VM that is off, and Get-KvmVm shows them' {
        Set-KvmVcpu cpu-b -RelativeWeight 300 -MaximumPercent 40 | Should -BeNullOrEmpty
        $vm = Get-KvmVm cpu-b
        $vm.CpuRelativeWeight | Should -Be 300
        $vm.CpuMaximumPercent | Should -Be 40
        $vm.ProcessorCount | Should -Be 1 -Because 'the vCPU count is left as it was'
    }

    It 'refuses values out of range naming the parameter, changing nothing' {
        { Set-KvmVcpu cpu-b -RelativeWeight 0 -ErrorAction Stop } | Should -Throw -ErrorId 'ParameterArgumentValidationError,KvmPS.Commands.SetKvmVcpuCommand'
        { Set-KvmVcpu cpu-b -MaximumPercent 101 -ErrorAction Stop } | Should -Throw '*MaximumPercent*'
        (Get-KvmVm cpu-b).CpuMaximumPercent | Should -Be 40
    }

    It 'starts the VM with the limits on its cgroup and changes them live' {
        New-KvmTestVm -Name cpu-lim -ProcessorCount 2 | Out-Null
        Set-KvmVcpu cpu-lim -RelativeWeight 400 -MaximumPercent 50
        Start-KvmVm cpu-lim
        $before = Get-KvmVm cpu-lim
        $limit = Get-CpuLimit $before.ProcessId cpu-lim
        $limit.Weight | Should -Be 400
        $limit.Max | Should -Be '100000 100000' -Because '50% of 2 vCPUs is one host CPU'
        $vm = Set-KvmVcpu cpu-lim -RelativeWeight 200 -MaximumPercent 100 -PassThru -WarningVariable warnings -WarningAction SilentlyContinue
        $warnings | Should -BeNullOrEmpty -Because 'management writes the running VMM''s cgroup'
        $vm.ProcessId | Should -Be $before.ProcessId
        $vm.CpuRelativeWeight | Should -Be 200
        $limit = Get-CpuLimit $before.ProcessId cpu-lim
        $limit.Weight | Should -Be 200
        $limit.Max | Should -Match '^(max|-1) 100000$' -Because '100% is no cap'
        Remove-KvmTestVm cpu-lim
    }

    It '-WhatIf names the weight and changes nothing' {
        $lines = Get-KvmWhatIfLine { Set-KvmVcpu cpu-b -RelativeWeight 900 -WhatIf }
        $lines | Should -Match 'relative weight to 900'
        (Get-KvmVm cpu-b).CpuRelativeWeight | Should -Be 300
    }
}
