#Requires -Version 7.4
# Stop-KvmVm: graceful stop and turn-off, what it says about the guest, pipeline, -WhatIf, -AsJob, errors, help.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    foreach ($n in 'sp-a', 'sp-b', 'sp-c') { New-KvmTestVm -Name $n | Out-Null }
}

AfterAll { Complete-KvmTest }

Describe 'Stop-KvmVm' {
    BeforeEach {
        Get-KvmVm | Where-Object { -not $_.IsActive } | Start-KvmVm
    }

    It '-TurnOff powers the VM off at once' {
        Stop-KvmVm -Name sp-a -TurnOff | Should -BeNullOrEmpty
        $vm = Get-KvmVm sp-a
        $vm.State | Should -Be 'Off'
        $vm.ProcessId | Should -BeNullOrEmpty
    }

    It 'shuts the built-in guest down through the ACPI power button, without a warning' -Tag 'Issue9', 'Issue13' {
        # The guest enables the power button during its boot, before it prints "ready"; the serial log keeps
        # earlier boots, so this boot's output is what follows the log's length before the start.
        Stop-KvmVm -Name sp-a -TurnOff
        $log = (Get-KvmVm sp-a).SerialLogPath
        $before = if (Test-Path $log) { (Get-Item $log).Length } else { 0 }
        Start-KvmVm -Name sp-a
        $deadline = (Get-Date).AddSeconds(30)
        while (-not ((Get-Content -Raw $log).Substring($before) -match 'ready') -and (Get-Date) -lt $deadline) { Start-Sleep -Milliseconds 100 }
        Stop-KvmVm -Name sp-a -TimeoutSec 20 -WarningVariable warnings -WarningAction SilentlyContinue
        (Get-KvmVm sp-a).State | Should -Be 'Off'
        $warnings | Should -BeNullOrEmpty -Because "the guest powered itself off (warnings: $($warnings -join ' | '))"
        (Get-Content -Raw $log).Substring($before) | Should -Match 'acpi: power button' -Because 'the guest saw the button, it was not turned off'
    }

    It 'stops a paused VM without claiming a timeout' -Tag 'Issue9' {
        Suspend-KvmVm sp-b
        Stop-KvmVm -Name sp-b -TimeoutSec 5 -WarningVariable warnings -WarningAction SilentlyContinue
        (Get-KvmVm sp-b).State | Should -Be 'Off'
        $warnings | Where-Object { "$_" -match 'in time|timed? ?out' } | Should -BeNullOrEmpty -Because `
            "a paused guest cannot see the power button; nothing timed out (warnings: $($warnings -join ' | '))"
        "$warnings" | Should -Match 'paused' -Because 'the message says why the guest could not shut down'
    }

    It '-Force shuts the VM down without asking and ends with it off' {
        Stop-KvmVm -Name sp-a -Force -TimeoutSec 5 -Confirm:$false -WarningAction SilentlyContinue
        (Get-KvmVm sp-a).State | Should -Be 'Off'
        $lines = Get-KvmWhatIfLine { Stop-KvmVm sp-b -Force -WhatIf }
        $lines | Should -Match '"Shut down VM" on target "sp-b"'
        (Get-KvmVm sp-b).State | Should -Be 'Running'
    }

    It '-PassThru outputs the stopped VM' {
        $vm = Stop-KvmVm sp-a -TurnOff -PassThru
        $vm.Name | Should -Be 'sp-a'
        $vm.State | Should -Be 'Off'
    }

    It 'takes VM objects from the pipeline by value' {
        Get-KvmVm 'sp-[ab]' | Stop-KvmVm -TurnOff
        (Get-KvmVm sp-a, sp-b, sp-c).State | Should -Be @('Off', 'Off', 'Running')
    }

    It 'takes Name and VMName from the pipeline by property name' {
        [pscustomobject]@{ Name = 'sp-a' }, [pscustomobject]@{ VMName = 'sp-b' } | Stop-KvmVm -TurnOff
        (Get-KvmVm sp-a, sp-b).State | Should -Be @('Off', 'Off')
    }

    It '-WhatIf stops nothing and says what it would do' {
        $lines = Get-KvmWhatIfLine { Stop-KvmVm sp-a -WhatIf; Stop-KvmVm sp-b -TurnOff -WhatIf }
        $lines[0] | Should -Match '"Shut down VM" on target "sp-a"'
        $lines[1] | Should -Match '"Turn off VM" on target "sp-b"'
        (Get-KvmVm sp-a, sp-b).State | Should -Be @('Running', 'Running')
    }

    It '-Confirm:$false stops without asking' {
        Stop-KvmVm sp-a -TurnOff -Confirm:$false
        (Get-KvmVm sp-a).State | Should -Be 'Off'
    }

    It '-AsJob returns a job whose output is the stopped VM' {
        $job = Stop-KvmVm sp-c -TurnOff -AsJob
        $job | Should -BeOfType ([System.Management.Automation.Job])
        $result = $job | Receive-Job -Wait -AutoRemoveJob
        $result.Name | Should -Be 'sp-c'
        $result.State | Should -Be 'Off'
    }

    It 'stopping a VM that is off is not an error (verbose says so)' {
        Stop-KvmVm sp-a -TurnOff
        $verbose = Stop-KvmVm sp-a -TurnOff -ErrorVariable err -Verbose 4>&1
        $err | Should -BeNullOrEmpty
        "$verbose" | Should -Match "'sp-a' was not running"
    }

    It 'reports a missing VM as ObjectNotFound' {
        Stop-KvmVm nosuch -TurnOff -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId VmNotFound -Command Stop-KvmVm -Category ObjectNotFound -TargetObject 'nosuch'
        Stop-KvmVm 'nosuch*' -TurnOff -ErrorVariable err
        $err | Should -BeNullOrEmpty
    }

    It 'has full help' {
        Assert-KvmHelp Stop-KvmVm | Out-Null
    }

    It 'completes VM names' {
        Get-KvmCompletion 'Stop-KvmVm sp-' | Should -Be @('sp-a', 'sp-b', 'sp-c')
    }
}
