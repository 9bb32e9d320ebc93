#Requires -Version 7.4
# Add-KvmDisk: attaching existing and new images, formats, a VM that boots with its disk, pipeline, -WhatIf, errors.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    New-KvmTestVm -Name dk-a | Out-Null
    New-KvmTestVm -Name dk-b | Out-Null
    $script:dir = Join-Path $env:KVMPS_HOME 'img'
    New-Item -ItemType Directory -Path $dir | Out-Null
}

AfterAll { Complete-KvmTest }

Describe 'Add-KvmDisk' {
    It 'creates a raw image in the VM folder with -SizeBytes and attaches it, outputting nothing' {
        Add-KvmDisk dk-a -Path data.img -SizeBytes 2MB | Should -BeNullOrEmpty
        $vm = Get-KvmVm dk-a
        $vm.Disks.Count | Should -Be 1
        $vm.Disks[0].Path | Should -Be 'data.img'
        $vm.Disks[0].Format | Should -Be 'Raw'
        (Get-Item (Join-Path $vm.Path 'disks/data.img')).Length | Should -Be 2MB
    }

    It 'creates qcow2 for a .qcow2 name and -PassThru outputs the VM' {
        $vm = Add-KvmDisk dk-a -Path logs.qcow2 -SizeBytes 4MB -PassThru
        $vm.Name | Should -Be 'dk-a'
        ($vm.Disks | Where-Object Path -eq 'logs.qcow2').Format | Should -Be 'Qcow2'
    }

    It 'attaches an existing image by absolute path, read-only' {
        $image = New-KvmDiskImage (Join-Path $dir 'shared.img') 1MB
        Add-KvmDisk dk-b -Path $image.Path -ReadOnly
        $disk = (Get-KvmVm dk-b).Disks | Where-Object Path -eq $image.Path
        $disk | Should -Not -BeNullOrEmpty
        $disk.ReadOnly | Should -BeTrue
    }

    It 'boots the VM with its disks attached' {
        Start-KvmVm dk-a
        (Get-KvmVm dk-a).State | Should -Be 'Running'
        Stop-KvmVm dk-a -TurnOff
    }

    It 'shows the disks in the list view' {
        $text = Get-KvmVm dk-a | Format-List | Out-String -Width 80
        $text | Should -Match 'Disks\s+: data\.img \(raw'
        $text | Should -Match 'logs\.qcow2 \(qcow2'
    }

    It 'takes VM objects by value and names by property name' {
        Get-KvmVm dk-a | Add-KvmDisk -Path p1.img -SizeBytes 1MB
        [pscustomobject]@{ VMName = 'dk-b' } | Add-KvmDisk -Path p2.img -SizeBytes 1MB
        (Get-KvmVm dk-a).Disks.Path | Should -Contain 'p1.img'
        (Get-KvmVm dk-b).Disks.Path | Should -Contain 'p2.img'
    }

    It '-WhatIf creates and attaches nothing' {
        $lines = Get-KvmWhatIfLine { Add-KvmDisk dk-b -Path whatif.img -SizeBytes 1MB -WhatIf }
        $lines | Should -Match 'target "dk-b"'
        $lines | Should -Match 'whatif\.img'
        (Get-KvmVm dk-b).Disks.Path | Should -Not -Contain 'whatif.img'
        Test-Path (Join-Path (Get-KvmVm dk-b).Path 'disks/whatif.img') | Should -BeFalse
    }

    It 'reports an image that does not exist (no -SizeBytes) as ObjectNotFound naming the path' {
        Add-KvmDisk dk-b -Path missing.img -ErrorVariable err -ErrorAction SilentlyContinue
        $full = Join-Path (Get-KvmVm dk-b).Path 'disks/missing.img'
        Assert-KvmError $err -ErrorId DiskImageNotFound -Command Add-KvmDisk -Category ObjectNotFound -TargetObject $full
        "$($err[0])" | Should -Match 'SizeBytes'
        (Get-KvmVm dk-b).Disks.Path | Should -Not -Contain 'missing.img'
    }

    It 'rejects a size that is not a multiple of 512 naming -SizeBytes, and creates nothing' -Tag 'Issue9' {
        Add-KvmDisk dk-b -Path odd.qcow2 -SizeBytes 1000 -ErrorVariable err -ErrorAction SilentlyContinue
        $err.Count | Should -Be 1
        $err[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
        $err[0].TargetObject | Should -Not -BeNullOrEmpty
        "$($err[0])" | Should -Match '-SizeBytes: must be a positive multiple of 512 \(got 1000\)'
        "$($err[0])" | Should -Not -Match "Parameter 'sizeBytes'"
        Join-Path (Get-KvmVm dk-b).Path 'disks/odd.qcow2' | Should -Not -Exist
    }

    It 'reports a missing VM as ObjectNotFound; a wildcard matching nothing is silent' {
        Add-KvmDisk nosuch -Path x.img -SizeBytes 1MB -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId VmNotFound -Command Add-KvmDisk -Category ObjectNotFound -TargetObject 'nosuch'
        Add-KvmDisk 'nosuch*' -Path x.img -SizeBytes 1MB -ErrorVariable err
        $err | Should -BeNullOrEmpty
    }

    It '-Pool creates the volume in the storage pool and stores the pool and volume' {
        New-KvmTestVm -Name dk-p | Out-Null
        $folder = Join-Path $env:KVMPS_HOME 'lab-pool'
        New-KvmStoragePool dklab $folder -CreatePath | Out-Null
        Add-KvmDisk dk-p -Pool dklab -Path data.qcow2 -SizeBytes 2MB
        $disk = (Get-KvmVm dk-p).Disks[0]
        $disk.Pool | Should -Be 'dklab'
        $disk.Volume | Should -Be 'data.qcow2'
        Test-Path (Join-Path $folder 'data.qcow2') | Should -BeTrue
        (Get-KvmVolume -Pool dklab data.qcow2).UsedBy | Should -Be @('dk-p')
        Add-KvmDisk dk-p -Pool dklab -Path '../x.raw' -SizeBytes 1MB -ErrorVariable err -ErrorAction SilentlyContinue
        "$($err[0])" | Should -Match 'Path'
        "$($err[0])" | Should -Match ([regex]::Escape('../x.raw'))
        Remove-KvmVm dk-p -Force -Confirm:$false   # the completion test below expects only dk-a and dk-b
    }

    It 'has full help' {
        Assert-KvmHelp Add-KvmDisk | Out-Null
    }

    It 'completes VM names' {
        Get-KvmCompletion 'Add-KvmDisk dk-' | Should -Be @('dk-a', 'dk-b')
    }
}

Describe 'Add-KvmDisk on a running VM' {
    BeforeAll {
        $script:run = New-KvmTestVm -Name dk-run -Start
    }
    AfterAll { Remove-KvmTestVm dk-run }

    It 'hot-plugs a new disk into the same kvmps-vmm, which lists it, and stores it' {
        Add-KvmDisk dk-run -Path hot.qcow2 -SizeBytes 8MB
        $vm = Get-KvmVm dk-run
        $vm.State | Should -Be 'Running'
        $vm.ProcessId | Should -Be $run.ProcessId
        $vm.Disks.Path | Should -Contain 'hot.qcow2'
        $device = Get-KvmTestLiveDevice dk-run | Where-Object { $_.Type -eq 'block' -and $_.Path -eq (Join-Path $vm.Path 'disks/hot.qcow2') }
        $device | Should -Not -BeNullOrEmpty
        $device.Format | Should -Be 'qcow2'
        $device.Serial | Should -Be 'dk-run-d0'
    }

    It '-Live adds a second disk now as well' {
        Add-KvmDisk dk-run -Path hot2.raw -SizeBytes 1MB -Live
        (Get-KvmVm dk-run).ProcessId | Should -Be $run.ProcessId
        @(Get-KvmTestLiveDevice dk-run | Where-Object { $_.Type -eq 'block' }).Count | Should -Be 2
    }

    It '-Config stores a disk for the next start only and warns that the running VM does not have it' {
        Add-KvmDisk dk-run -Path later.raw -SizeBytes 1MB -Config -WarningVariable warn -WarningAction SilentlyContinue
        (Get-KvmVm dk-run).Disks.Path | Should -Contain 'later.raw'
        Get-KvmTestLiveDevice dk-run | Where-Object { $_.Path -like '*later.raw' } | Should -BeNullOrEmpty
        "$warn" | Should -Match 'restarted'
    }

    It 'refuses -Live on a VM that is off, creating nothing' {
        Add-KvmDisk dk-b -Path live.raw -SizeBytes 1MB -Live -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId InvalidVmState -Command Add-KvmDisk -Category InvalidOperation -TargetObject 'dk-b'
        (Get-KvmVm dk-b).Disks.Path | Should -Not -Contain 'live.raw'
        Join-Path (Get-KvmVm dk-b).Path 'disks/live.raw' | Should -Not -Exist
    }

    It 'refuses -Live and -Config together' {
        { Add-KvmDisk dk-run -Path x.raw -SizeBytes 1MB -Live -Config -ErrorAction Stop } | Should -Throw '*-Live or -Config, not both*'
        (Get-KvmVm dk-run).Disks.Path | Should -Not -Contain 'x.raw'
    }
}
