#Requires -Version 7.4
# Remove-KvmDisk: detaching by definition path or full path (the image stays), pipeline, -WhatIf, errors.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    foreach ($n in 'rd-a', 'rd-b') {
        New-KvmTestVm -Name $n | Out-Null
        Add-KvmDisk $n -Path one.img -SizeBytes 1MB
        Add-KvmDisk $n -Path two.img -SizeBytes 1MB
        Add-KvmDisk $n -Path three.img -SizeBytes 1MB
    }
}

AfterAll { Complete-KvmTest }

Describe 'Remove-KvmDisk' {
    It 'completes -Path with the disks of the VM -Name selects' -Tag 'Issue9' {
        Get-KvmCompletion 'Remove-KvmDisk -Name rd-a -Path t' | Should -Be @('three.img', 'two.img')
        Get-KvmCompletion 'Remove-KvmDisk -Name rd-a -Path ' | Should -Be @('one.img', 'three.img', 'two.img')
    }

    It 'detaches a disk by its path in the definition and keeps the image file' {
        Remove-KvmDisk rd-a -Path one.img | Should -BeNullOrEmpty
        $vm = Get-KvmVm rd-a
        $vm.Disks.Path | Should -Not -Contain 'one.img'
        $vm.Disks.Count | Should -Be 2
        Test-Path (Join-Path $vm.Path 'disks/one.img') | Should -BeTrue
    }

    It 'detaches a disk by the full path of its image; -PassThru outputs the VM' {
        $full = Join-Path (Get-KvmVm rd-a).Path 'disks/two.img'
        $vm = Remove-KvmDisk rd-a -Path $full -PassThru
        $vm.Name | Should -Be 'rd-a'
        $vm.Disks.Path | Should -Be @('three.img')
    }

    It 'takes VM objects by value and names by property name' {
        Get-KvmVm rd-b | Remove-KvmDisk -Path one.img
        [pscustomobject]@{ Name = 'rd-b' } | Remove-KvmDisk -Path two.img
        (Get-KvmVm rd-b).Disks.Path | Should -Be @('three.img')
    }

    It '-WhatIf detaches nothing' {
        $lines = Get-KvmWhatIfLine { Remove-KvmDisk rd-b -Path three.img -WhatIf }
        $lines | Should -Match 'target "rd-b"'
        $lines | Should -Match 'three\.img'
        (Get-KvmVm rd-b).Disks.Path | Should -Be @('three.img')
    }

    It 'reports a disk the VM does not have as ObjectNotFound naming the path' {
        Remove-KvmDisk rd-b -Path nosuch.img -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId DeviceNotFound -Command Remove-KvmDisk -Category ObjectNotFound -TargetObject 'nosuch.img'
        "$($err[0])" | Should -Match "'rd-b'"
    }

    It 'reports a missing VM as ObjectNotFound; a wildcard matching nothing is silent' {
        Remove-KvmDisk nosuch -Path one.img -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId VmNotFound -Command Remove-KvmDisk -Category ObjectNotFound -TargetObject 'nosuch'
        Remove-KvmDisk 'nosuch*' -Path one.img -ErrorVariable err
        $err | Should -BeNullOrEmpty
    }

    It 'has full help' {
        Assert-KvmHelp Remove-KvmDisk | Out-Null
    }

    It 'completes VM names' {
        Get-KvmCompletion 'Remove-KvmDisk -Name rd-' | Should -Be @('rd-a', 'rd-b')
    }
}

Describe 'Remove-KvmDisk on a running VM' {
    BeforeAll {
        New-KvmTestVm -Name rd-run | Out-Null
        Add-KvmDisk rd-run -Path boot.raw -SizeBytes 1MB
        Add-KvmDisk rd-run -Path data.raw -SizeBytes 1MB
        Start-KvmVm rd-run
        $script:run = Get-KvmVm rd-run
        $script:disks = Join-Path $run.Path 'disks'
    }
    AfterAll { Remove-KvmTestVm rd-run }

    It 'a hot-added disk: the guest releases it, the same kvmps-vmm no longer lists it, and the definition drops it' {
        Add-KvmDisk rd-run -Path a.raw -SizeBytes 1MB
        Get-KvmTestLiveDevice rd-run | Where-Object Path -eq (Join-Path $disks 'a.raw') | Should -Not -BeNullOrEmpty
        Remove-KvmDisk rd-run -Path a.raw -TimeoutSec 30
        $vm = Get-KvmVm rd-run
        $vm.ProcessId | Should -Be $run.ProcessId
        $vm.Disks.Path | Should -Not -Contain 'a.raw'
        Get-KvmTestLiveDevice rd-run | Where-Object Path -eq (Join-Path $disks 'a.raw') | Should -BeNullOrEmpty
        Join-Path $disks 'a.raw' | Should -Exist # the image is kept
    }

    It 'a paused guest cannot release it: DeviceRemovalTimedOut, and the disk stays attached and defined' {
        Add-KvmDisk rd-run -Path b.raw -SizeBytes 1MB
        Suspend-KvmVm rd-run
        try {
            Remove-KvmDisk rd-run -Path b.raw -TimeoutSec 1 -ErrorVariable err -ErrorAction SilentlyContinue
            Assert-KvmError $err -ErrorId DeviceRemovalTimedOut -Command Remove-KvmDisk -Category OperationTimeout -TargetObject 'b.raw'
            "$($err[0])" | Should -Match 'did not release'
            (Get-KvmVm rd-run).Disks.Path | Should -Contain 'b.raw'
            Get-KvmTestLiveDevice rd-run | Where-Object Path -eq (Join-Path $disks 'b.raw') | Should -Not -BeNullOrEmpty
        }
        finally { Resume-KvmVm rd-run }
    }

    It 'a second disk the VM started with leaves it live (-Live is the default on a running VM): same kvmps-vmm, image closed, definition drops it' {
        Get-KvmTestLiveDevice rd-run | Where-Object Path -eq (Join-Path $disks 'data.raw') | Should -Not -BeNullOrEmpty
        Remove-KvmDisk rd-run -Path data.raw -TimeoutSec 30 -WarningVariable warn
        $warn | Should -BeNullOrEmpty
        $vm = Get-KvmVm rd-run
        $vm.ProcessId | Should -Be $run.ProcessId
        $vm.Disks.Path | Should -Not -Contain 'data.raw'
        Get-KvmTestLiveDevice rd-run | Where-Object Path -eq (Join-Path $disks 'data.raw') | Should -BeNullOrEmpty
        (Get-ChildItem "/proc/$($run.ProcessId)/fd" | Where-Object { $_.LinkTarget -eq (Join-Path $disks 'data.raw') }) | Should -BeNullOrEmpty
        Join-Path $disks 'data.raw' | Should -Exist # the image is kept
    }

    It 'the boot disk (the first the VM started with): -Live refuses naming why; without it the definition drops it for the next start, with a warning' {
        Remove-KvmDisk rd-run -Path boot.raw -Live -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId InvalidVmSetting -Command Remove-KvmDisk -Category InvalidArgument -TargetObject 'rd-run'
        "$($err[0])" | Should -Match "it is the VM's boot disk"
        (Get-KvmVm rd-run).Disks.Path | Should -Contain 'boot.raw'
        Remove-KvmDisk rd-run -Path boot.raw -WarningVariable warn -WarningAction SilentlyContinue
        "$warn" | Should -Match 'restarted'
        (Get-KvmVm rd-run).Disks.Path | Should -Not -Contain 'boot.raw'
        Get-KvmTestLiveDevice rd-run | Where-Object Path -eq (Join-Path $disks 'boot.raw') | Should -Not -BeNullOrEmpty
        (Get-KvmVm rd-run).ProcessId | Should -Be $run.ProcessId
    }

    It '-Config drops a hot-added disk from the definition only' {
        Add-KvmDisk rd-run -Path c.raw -SizeBytes 1MB
        Remove-KvmDisk rd-run -Path c.raw -Config -WarningAction SilentlyContinue
        (Get-KvmVm rd-run).Disks.Path | Should -Not -Contain 'c.raw'
        Get-KvmTestLiveDevice rd-run | Where-Object Path -eq (Join-Path $disks 'c.raw') | Should -Not -BeNullOrEmpty
    }
}
