#Requires -Version 7.4
# Suspend-KvmVm: pausing vCPUs; pipeline, -PassThru, -WhatIf, state errors, help.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    New-KvmTestVm -Name su-a -Start | Out-Null
    New-KvmTestVm -Name su-b -Start | Out-Null
    New-KvmTestVm -Name su-off | Out-Null
}

AfterAll { Complete-KvmTest }

Describe 'Suspend-KvmVm' {
    AfterEach {
        Get-KvmVm | Where-Object State -eq 'Paused' | Resume-KvmVm
    }

    It 'pauses a running VM; its VMM keeps running' {
        $pidBefore = (Get-KvmVm su-a).ProcessId
        Suspend-KvmVm su-a | Should -BeNullOrEmpty
        $vm = Get-KvmVm su-a
        $vm.State | Should -Be 'Paused'
        $vm.ProcessId | Should -Be $pidBefore
    }

    It '-PassThru outputs the paused VM' {
        (Suspend-KvmVm su-a -PassThru).State | Should -Be 'Paused'
    }

    It 'takes VM objects by value and names by property name' {
        Get-KvmVm su-a | Suspend-KvmVm
        [pscustomobject]@{ Name = 'su-b' } | Suspend-KvmVm
        (Get-KvmVm su-a, su-b).State | Should -Be @('Paused', 'Paused')
    }

    It '-WhatIf pauses nothing' {
        $lines = Get-KvmWhatIfLine { Suspend-KvmVm su-a -WhatIf }
        $lines | Should -Match '"Suspend VM" on target "su-a"'
        (Get-KvmVm su-a).State | Should -Be 'Running'
    }

    It '-Confirm:$false pauses without asking' {
        Suspend-KvmVm su-a -Confirm:$false
        (Get-KvmVm su-a).State | Should -Be 'Paused'
    }

    It 'reports a VM that is off as InvalidOperation, naming it' {
        Suspend-KvmVm su-off -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId InvalidVmState -Command Suspend-KvmVm -Category InvalidOperation -TargetObject 'su-off'
        "$($err[0])" | Should -Match "'su-off' is off"
    }

    It 'reports a missing VM as ObjectNotFound; a wildcard matching nothing is silent' {
        Suspend-KvmVm nosuch -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId VmNotFound -Command Suspend-KvmVm -Category ObjectNotFound -TargetObject 'nosuch'
        Suspend-KvmVm 'nosuch*' -ErrorVariable err
        $err | Should -BeNullOrEmpty
    }

    It 'has full help' {
        Assert-KvmHelp Suspend-KvmVm | Out-Null
    }

    It 'completes VM names' {
        Get-KvmCompletion 'Suspend-KvmVm su-' | Should -Be @('su-a', 'su-b', 'su-off')
    }
}
