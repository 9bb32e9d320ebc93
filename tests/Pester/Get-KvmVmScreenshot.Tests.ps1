#Requires -Version 7.4
# Get-KvmVmScreenshot: refusals for a VM without display or not running, -WhatIf, one VM per call.
# The picture itself is checked against QEMU's VNC server in KvmPS.Management.Tests (RfbClientQemuTests) and, once
# the VMM's display and VNC server are merged, end to end in the ISO install tests.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    New-KvmTestVm -Name ss-plain | Out-Null
    New-KvmVm -Definition @{ Name = 'ss-disp'; MemoryStartupBytes = 64MB; Display = @{ Vnc = 'unix' } } -Confirm:$false | Out-Null
    $script:png = Join-Path $env:KVMPS_HOME 'screen.png'
}

AfterAll { Complete-KvmTest }

Describe 'Get-KvmVmScreenshot' {
    It 'refuses a VM without a display, saying how to give it one' {
        Get-KvmVmScreenshot ss-plain -Path $png -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId InvalidVmState -Command Get-KvmVmScreenshot -Category InvalidOperation -TargetObject 'ss-plain'
        "$($err[0])" | Should -Match 'has no display'
        Test-Path $png | Should -BeFalse
    }

    It 'refuses a VM that is not running' {
        Get-KvmVm ss-disp | Get-KvmVmScreenshot -Path $png -ErrorVariable err -ErrorAction SilentlyContinue
        "$($err[0])" | Should -Match 'needs it running'
    }

    It '-WhatIf writes nothing' {
        $lines = Get-KvmWhatIfLine { Get-KvmVmScreenshot ss-disp -Path $png -WhatIf }
        $lines | Should -Match 'screen\.png'
        Test-Path $png | Should -BeFalse
    }

    It 'reports a missing VM as ObjectNotFound' {
        Get-KvmVmScreenshot nosuch -Path $png -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId VmNotFound -Command Get-KvmVmScreenshot -Category ObjectNotFound -TargetObject 'nosuch'
    }

    It 'has full help' {
        Assert-KvmHelp Get-KvmVmScreenshot | Out-Null
    }
}
