#Requires -Version 7.4
# Invoke-KvmBalloon: memory status and balloon target; pipeline, -WhatIf, range errors, the status view, help.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    New-KvmVm -Name bal-run -MemoryStartupBytes 128MB -MemoryMinimumBytes 64MB -MemoryMaximumBytes 256MB -BalloonEnabled | Start-KvmVm
    New-KvmVm -Name bal-off -MemoryStartupBytes 64MB -MemoryMinimumBytes 32MB -MemoryMaximumBytes 128MB | Out-Null
}

AfterAll { Complete-KvmTest }

Describe 'Invoke-KvmBalloon' {
    It 'reports the memory of a running VM without -TargetBytes' {
        $status = Invoke-KvmBalloon bal-run
        $status.Name | Should -Be 'bal-run'
        $status.State | Should -Be 'Running'
        $status.BalloonEnabled | Should -BeTrue
        $status.TargetBytes | Should -Be 128MB
        $status.CurrentBytes | Should -Be 128MB
        $status.MinimumBytes | Should -Be 64MB
        $status.MaximumBytes | Should -Be 256MB
    }

    It 'reports a VM that is off without live numbers' {
        $status = Invoke-KvmBalloon bal-off
        $status.State | Should -Be 'Off'
        $status.CurrentBytes | Should -BeNullOrEmpty
    }

    It 'inflates the balloon of a running VM live to leave it the target' {
        $status = Invoke-KvmBalloon bal-run -TargetBytes 96MB -WarningVariable warnings
        $warnings | Should -BeNullOrEmpty -Because 'a VM with a balloon takes the target live'
        $status.BalloonTargetBytes | Should -Be 32MB -Because 'the balloon takes 128 MB - 96 MB'
        (Invoke-KvmBalloon bal-run).BalloonTargetBytes | Should -Be 32MB
    }

    # Setting -TargetBytes 96MB reports TargetBytes (the table's TargetMB) 128 MB: the startup memory, not the target.
    It 'reports the target just set as TargetBytes' -Tag 'NewDefect' {
        (Invoke-KvmBalloon bal-run -TargetBytes 96MB).TargetBytes | Should -Be 96MB
    }

    It 'grows a running VM without a balloon live within its maximum (virtio-mem) and stores it as its startup memory' {
        Start-KvmVm bal-off
        $pidBefore = (Get-KvmVm bal-off).ProcessId
        $status = Invoke-KvmBalloon bal-off -TargetBytes 80MB -WarningVariable warnings
        $warnings | Should -BeNullOrEmpty -Because 'memory above startup and within the maximum is hot-plugged'
        $status.TargetBytes | Should -Be 80MB
        $vm = Get-KvmVm bal-off
        $vm.MemoryStartupBytes | Should -Be 80MB
        $vm.MemoryDemandBytes | Should -Be 80MB
        $vm.ProcessId | Should -Be $pidBefore
        Stop-KvmVm bal-off -TurnOff
    }

    It 'rejects a target above the maximum memory, naming the limit' {
        $before = (Invoke-KvmBalloon bal-run).BalloonTargetBytes
        Invoke-KvmBalloon bal-run -TargetBytes 1GB -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId InvalidVmSetting -Command Invoke-KvmBalloon -Category InvalidArgument -TargetObject 'bal-run'
        "$($err[0])" | Should -Match 'maximum'
        (Invoke-KvmBalloon bal-run).BalloonTargetBytes | Should -Be $before
    }

    It 'takes VM objects by value and names by property name' {
        (Get-KvmVm bal-run, bal-off | Invoke-KvmBalloon).Name | Should -Be @('bal-run', 'bal-off')
        ([pscustomobject]@{ VMName = 'bal-off' } | Invoke-KvmBalloon).Name | Should -Be 'bal-off'
    }

    It '-WhatIf changes nothing' {
        $lines = Get-KvmWhatIfLine { Invoke-KvmBalloon bal-run -TargetBytes 80MB -WhatIf }
        $lines | Should -Match 'target "bal-run"'
        $lines | Should -Match '80 ?Mi?B'
        (Invoke-KvmBalloon bal-run).BalloonTargetBytes | Should -Be 32MB
    }

    It 'shows the status as a table that fits 80 columns' -Tag 'NewDefect' {
        $lines = Assert-KvmView @(Invoke-KvmBalloon bal-run, bal-off) -View Table
        $lines.Count | Should -Be 4 -Because 'a header, its dashes and one line per VM'
    }

    It 'reports a missing VM as ObjectNotFound; a wildcard matching nothing is silent' {
        Invoke-KvmBalloon nosuch -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId VmNotFound -Command Invoke-KvmBalloon -Category ObjectNotFound -TargetObject 'nosuch'
        Invoke-KvmBalloon 'nosuch*' -ErrorVariable err
        $err | Should -BeNullOrEmpty
    }

    It 'has full help' {
        Assert-KvmHelp Invoke-KvmBalloon | Out-Null
    }

    It 'completes VM names' {
        Get-KvmCompletion 'Invoke-KvmBalloon bal-o' | Should -Be @('bal-off')
    }
}
