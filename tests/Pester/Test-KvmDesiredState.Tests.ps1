#Requires -Version 7.4
# Test-KvmDesiredState: $true/$false and -Detailed drift against real VMs, manifests from the pipeline, errors,
# the drift view, path completion and help.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    $script:host1 = New-KvmTestManifest 'host.psd1' @'
@{
    Defaults        = @{ MemoryStartupBytes = 64MB; State = 'Running' }
    VirtualMachines = @(
        @{ Name = 'tds-web'; VcpuCount = 2 }
        @{ Name = 'tds-db'; Notes = 'db' }
    )
}
'@
}

AfterAll { Complete-KvmTest }

Describe 'Test-KvmDesiredState' {
    It 'is $false before anything exists, with one Ensure drift per VM' {
        Test-KvmDesiredState -Path $host1 | Should -BeFalse
        $drift = @(Test-KvmDesiredState -Path $host1 -Detailed)
        $drift.Count | Should -Be 2
        $drift[0].VmName | Should -Be 'tds-web'
        $drift[0].Property | Should -Be 'Ensure'
        $drift[0].Expected | Should -Be 'Present'
        $drift[0].Actual | Should -Be 'Absent'
    }

    It 'shows drift as a table, one line per drift, in 80 columns' {
        $lines = Assert-KvmView @(Test-KvmDesiredState -Path $host1 -Detailed) -View Default
        $lines[0] | Should -Match '^VmName\s+Property\s+Expected\s+Actual'
        $lines.Count | Should -Be 4
    }

    It 'round trip: $true after Invoke-KvmDesiredState, with no drift' {
        Invoke-KvmDesiredState -Path $host1 -Confirm:$false | Out-Null
        Test-KvmDesiredState -Path $host1 | Should -BeTrue
        Test-KvmDesiredState -Path $host1 -Detailed | Should -BeNullOrEmpty
    }

    It 'reports each drifted property after changes by hand, and changes nothing' {
        Stop-KvmVm tds-db -TurnOff
        Set-KvmVm tds-web -Notes 'unmanaged notes'    # Notes are not in the manifest for tds-web: not enforced
        Set-KvmVcpu tds-web -Count 1 -WarningAction SilentlyContinue
        Test-KvmDesiredState -Path $host1 | Should -BeFalse
        $drift = @(Test-KvmDesiredState -Path $host1 -Detailed)
        ($drift | ForEach-Object { '{0}.{1}: {2} -> {3}' -f $_.VmName, $_.Property, $_.Actual, $_.Expected }) |
            Should -Be @('tds-web.VcpuCount: 1 -> 2', 'tds-db.State: Off -> Running')
        (Get-KvmVm tds-db).State | Should -Be 'Off' -Because 'testing changes nothing'
        Invoke-KvmDesiredState -Path $host1 -Confirm:$false -WarningAction SilentlyContinue | Out-Null
        Restart-KvmVm tds-web -TurnOff
        Test-KvmDesiredState -Path $host1 | Should -BeTrue
    }

    It 'takes manifests from Get-ChildItem by FullName and by position, with wildcards' {
        Get-ChildItem -LiteralPath $host1 | Test-KvmDesiredState | Should -BeTrue
        Test-KvmDesiredState (Join-Path (Split-Path $host1) 'h*.psd1') | Should -BeTrue
        $host1 | Test-KvmDesiredState | Should -BeTrue
    }

    It 'reports a wildcard that matches no manifest as ObjectNotFound' {
        $pattern = Join-Path (Split-Path $host1) 'nothing*.psd1'
        Test-KvmDesiredState $pattern -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        Assert-KvmError $err -ErrorId ManifestNotFound -Command Test-KvmDesiredState -Category ObjectNotFound -TargetObject $pattern
    }

    It 'reports a missing manifest file, naming it' {
        $missing = Join-Path (Split-Path $host1) 'missing.psd1'
        Test-KvmDesiredState -Path $missing -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -Be 'InvalidManifest,KvmPS.Commands.TestKvmDesiredStateCommand'
        "$($err[0])" | Should -Be "$missing`: the manifest file does not exist"
    }

    It 'reports a manifest that is not a data file at file:line:column' {
        $bad = New-KvmTestManifest 'expr.psd1' "@{ Name = 'tds-x'; MemoryStartupBytes = 64MB + 1 }"
        Test-KvmDesiredState -Path $bad -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -Be 'InvalidManifest,KvmPS.Commands.TestKvmDesiredStateCommand'
        $err[0].CategoryInfo.Category | Should -Be 'ParserError'
        "$($err[0])" | Should -Match ([regex]::Escape($bad) + ':1:\d+: ')
        "$($err[0].TargetObject)" | Should -Be $bad
    }

    It 'completes manifest paths' {
        Push-Location (Split-Path $host1)
        try { Get-KvmCompletion 'Test-KvmDesiredState ./ho' | Should -Match 'host\.psd1' }
        finally { Pop-Location }
    }

    It 'has full help' {
        Assert-KvmHelp Test-KvmDesiredState | Out-Null
    }
}
