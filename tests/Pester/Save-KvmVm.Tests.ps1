#Requires -Version 7.4
# Save-KvmVm: a running VM becomes Saved with no VMM; Start-KvmVm resumes it; -TurnOff discards; errors, help.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    New-KvmTestVm -Name sv-a -Start | Out-Null
    New-KvmTestVm -Name sv-off | Out-Null
}

AfterAll { Complete-KvmTest }

Describe 'Save-KvmVm' {
    It 'saves a running VM: state Saved, no VMM; Start-KvmVm resumes it' {
        $vm = Save-KvmVm sv-a -Confirm:$false -PassThru
        $vm.State | Should -Be 'Saved'
        $vm.ProcessId | Should -BeNullOrEmpty
        $started = Start-KvmVm sv-a -PassThru
        $started.State | Should -Be 'Running'
        Test-Path (Join-Path $started.Path 'saved') | Should -BeFalse
    }

    It 'Stop-KvmVm -TurnOff discards the saved state; a graceful stop says how to go on' {
        Get-KvmVm sv-a | Save-KvmVm
        Stop-KvmVm sv-a -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId InvalidVmState -Command Stop-KvmVm -Category InvalidOperation -TargetObject 'sv-a'
        "$($err[0])" | Should -Match 'TurnOff'
        Stop-KvmVm sv-a -TurnOff -Confirm:$false
        (Get-KvmVm sv-a).State | Should -Be 'Off'
    }

    It 'refuses a VM that is off' {
        Save-KvmVm sv-off -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId InvalidVmState -Command Save-KvmVm -Category InvalidOperation -TargetObject 'sv-off'
    }

    It '-WhatIf saves nothing' {
        (Get-KvmWhatIfLine { Save-KvmVm sv-off -WhatIf }) | Should -Match '"Save VM" on target "sv-off"'
    }

    It 'has help' { Assert-KvmHelp Save-KvmVm | Out-Null }
}
