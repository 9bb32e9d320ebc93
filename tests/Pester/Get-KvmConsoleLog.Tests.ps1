#Requires -Version 7.4
# Get-KvmConsoleLog: the serial console output of the built-in guest, -Tail, pipeline, errors, help.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    New-KvmTestVm -Name log-a -Start | Out-Null
    New-KvmTestVm -Name log-b -Start | Out-Null
    New-KvmTestVm -Name log-new | Out-Null
    # The built-in guest prints its banner and "ready" at boot; wait for it.
    $deadline = [DateTime]::UtcNow.AddSeconds(20)
    while ([DateTime]::UtcNow -lt $deadline -and @((Get-KvmConsoleLog log-a, log-b) -match '^ready').Count -lt 2) { Start-Sleep -Milliseconds 100 }
    @((Get-KvmConsoleLog log-a, log-b) -match '^ready').Count | Should -Be 2 -Because 'both guests print "ready" within 20 s of starting'
}

AfterAll { Complete-KvmTest }

Describe 'Get-KvmConsoleLog' {
    It 'outputs the console of the built-in guest as one string per line' {
        $lines = Get-KvmConsoleLog log-a
        $lines | Should -BeOfType ([string])
        ($lines -match '^KvmPS built-in guest') | Should -Not -BeNullOrEmpty
        $lines | Should -Contain 'ready'
        $lines | Should -Contain 'memory: 64 MiB'
        $lines | Where-Object { $_ -match "`r|`n" } | Should -BeNullOrEmpty
    }

    It '-Tail gives the last lines only' {
        $all = @(Get-KvmConsoleLog log-a)
        $tail = @(Get-KvmConsoleLog log-a -Tail 2)
        $tail.Count | Should -Be 2
        $tail | Should -Be $all[-2..-1]
        @(Get-KvmConsoleLog log-a -Last 1) | Should -Be $all[-1]
        Get-KvmConsoleLog log-a -Tail 0 | Should -BeNullOrEmpty
    }

    It 'outputs nothing for a VM that never ran' {
        Get-KvmConsoleLog log-new -ErrorVariable err | Should -BeNullOrEmpty
        $err | Should -BeNullOrEmpty
    }

    It 'keeps the log of a VM after it stops' {
        Stop-KvmVm log-b -TurnOff
        Get-KvmConsoleLog log-b | Should -Contain 'ready'
    }

    It 'takes VM objects by value and names by property name' {
        (Get-KvmVm log-a | Get-KvmConsoleLog) | Should -Contain 'ready'
        ([pscustomobject]@{ VMName = 'log-b' } | Get-KvmConsoleLog) | Should -Contain 'ready'
    }

    It 'reports a missing VM as ObjectNotFound; a wildcard matching nothing is silent' {
        Get-KvmConsoleLog nosuch -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId VmNotFound -Command Get-KvmConsoleLog -Category ObjectNotFound -TargetObject 'nosuch'
        Get-KvmConsoleLog 'nosuch*' -ErrorVariable err
        $err | Should -BeNullOrEmpty
    }

    It 'has full help' {
        Assert-KvmHelp Get-KvmConsoleLog | Out-Null
    }

    It 'completes VM names' {
        Get-KvmCompletion 'Get-KvmConsoleLog log-n' | Should -Be @('log-new')
    }
}
