#Requires -Version 7.4
# Resume-KvmVm: resuming paused vCPUs; pipeline, -PassThru, -WhatIf, state errors, help.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    New-KvmTestVm -Name re-a -Start | Out-Null
    New-KvmTestVm -Name re-b -Start | Out-Null
    New-KvmTestVm -Name re-off | Out-Null
}

AfterAll { Complete-KvmTest }

Describe 'Resume-KvmVm' {
    BeforeEach {
        Get-KvmVm re-a, re-b | Where-Object State -eq 'Running' | Suspend-KvmVm
    }

    It 'resumes a paused VM in the same VMM process' {
        $pidBefore = (Get-KvmVm re-a).ProcessId
        Resume-KvmVm re-a | Should -BeNullOrEmpty
        $vm = Get-KvmVm re-a
        $vm.State | Should -Be 'Running'
        $vm.ProcessId | Should -Be $pidBefore
    }

    It '-PassThru outputs the running VM' {
        (Resume-KvmVm re-a -PassThru).State | Should -Be 'Running'
    }

    It 'takes VM objects by value and names by property name' {
        Get-KvmVm re-a | Resume-KvmVm
        [pscustomobject]@{ VMName = 're-b' } | Resume-KvmVm
        (Get-KvmVm re-a, re-b).State | Should -Be @('Running', 'Running')
    }

    It '-WhatIf resumes nothing' {
        $lines = Get-KvmWhatIfLine { Resume-KvmVm re-a -WhatIf }
        $lines | Should -Match '"Resume VM" on target "re-a"'
        (Get-KvmVm re-a).State | Should -Be 'Paused'
    }

    It '-Confirm:$false resumes without asking' {
        Resume-KvmVm re-a -Confirm:$false
        (Get-KvmVm re-a).State | Should -Be 'Running'
    }

    It 'reports a VM that is off as InvalidOperation, naming it' {
        Resume-KvmVm re-off -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId InvalidVmState -Command Resume-KvmVm -Category InvalidOperation -TargetObject 're-off'
        "$($err[0])" | Should -Match 'paused'
    }

    It 'reports a missing VM as ObjectNotFound; a wildcard matching nothing is silent' {
        Resume-KvmVm nosuch -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId VmNotFound -Command Resume-KvmVm -Category ObjectNotFound -TargetObject 'nosuch'
        Resume-KvmVm 'nosuch*' -ErrorVariable err
        $err | Should -BeNullOrEmpty
    }

    It 'has full help' {
        Assert-KvmHelp Resume-KvmVm | Out-Null
    }

    It 'completes VM names' {
        Get-KvmCompletion 'Resume-KvmVm re-o' | Should -Be @('re-off')
    }
}
