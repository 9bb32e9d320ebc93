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

    It 'saves the screen of a VM booting an ISO (SeaBIOS and its VGA BIOS draw text) as a PNG' -Skip:(-not (Test-Path /usr/lib/grub-rescue/grub-rescue-cdrom.iso)) {
        New-KvmVm -Name ss-iso -MemoryStartupBytes 256MB -DvdPath /usr/lib/grub-rescue/grub-rescue-cdrom.iso -Confirm:$false | Out-Null
        Start-KvmVm ss-iso -Confirm:$false | Out-Null
        try {
            # Guest firmware runs emulated on the nested test host: poll until text (non-black pixels) is on the screen.
            $deadline = (Get-Date).AddSeconds(240)
            do {
                Start-Sleep -Seconds 2
                $shot = Get-KvmVmScreenshot ss-iso -Path $png -PassThru -Confirm:$false
                $lit = @($shot.Frame.Bgrx | Where-Object { $_ -ne 0 } | Select-Object -First 1).Count
            } until ($lit -gt 0 -or (Get-Date) -gt $deadline)
            $lit | Should -BeGreaterThan 0 -Because 'the firmware has drawn on the screen'
            $shot.VmName | Should -Be 'ss-iso'
            ($shot.Width, $shot.Height) | Should -Be @(1024, 768)
            $bytes = [System.IO.File]::ReadAllBytes($png)
            [System.Text.Encoding]::ASCII.GetString($bytes, 1, 3) | Should -Be 'PNG'
            (Get-KvmVm ss-iso).State | Should -Be 'Running'
        }
        finally {
            Stop-KvmVm ss-iso -Force -Confirm:$false -ErrorAction SilentlyContinue | Out-Null
        }
    }

    It 'has full help' {
        Assert-KvmHelp Get-KvmVmScreenshot | Out-Null
    }
}
