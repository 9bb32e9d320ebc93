#Requires -Version 7.4
# New-KvmDiskImage: raw and qcow2 images, backing images, paths, -WhatIf, errors, the view and help.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    $script:dir = Join-Path $env:KVMPS_HOME 'img'
    New-Item -ItemType Directory -Path $dir | Out-Null

    function Get-Magic([string] $Path) {
        $bytes = [System.IO.File]::ReadAllBytes($Path)
        [System.Text.Encoding]::ASCII.GetString($bytes, 0, 3)
    }
}

AfterAll { Complete-KvmTest }

Describe 'New-KvmDiskImage' {
    It 'creates a sparse raw image and describes it' {
        $image = New-KvmDiskImage -Path (Join-Path $dir 'a.img') -SizeBytes 4MB
        $image | Should -BeOfType ([KvmPS.PowerShell.KvmDiskImage])
        $image.Path | Should -Be (Join-Path $dir 'a.img')
        $image.Format | Should -Be 'Raw'
        $image.SizeBytes | Should -Be 4MB
        (Get-Item $image.Path).Length | Should -Be 4MB
    }

    It 'creates a qcow2 image for a .qcow2 name' {
        $image = New-KvmDiskImage (Join-Path $dir 'b.qcow2') 8MB
        $image.Format | Should -Be 'Qcow2'
        $image.SizeBytes | Should -Be 8MB
        Get-Magic $image.Path | Should -Be 'QFI'
        $image.FileSizeBytes | Should -BeLessThan 1MB -Because 'a new qcow2 image holds only its metadata'
    }

    It 'creates a qcow2 overlay that takes its size from the backing image' {
        $image = New-KvmDiskImage -Path (Join-Path $dir 'c.img') -BackingPath (Join-Path $dir 'b.qcow2')
        $image.Format | Should -Be 'Qcow2' -Because 'a backing image needs qcow2'
        $image.SizeBytes | Should -Be 8MB
        $image.BackingPath | Should -Be (Join-Path $dir 'b.qcow2')
        Get-Magic $image.Path | Should -Be 'QFI'
    }

    It 'resolves a relative path against the current location' {
        Push-Location $dir
        try { $image = New-KvmDiskImage rel.img 1MB }
        finally { Pop-Location }
        $image.Path | Should -Be (Join-Path $dir 'rel.img')
        Test-Path (Join-Path $dir 'rel.img') | Should -BeTrue
    }

    It 'takes the path from the pipeline by property name (FullName)' {
        $image = [pscustomobject]@{ FullName = (Join-Path $dir 'piped.img') } | New-KvmDiskImage -SizeBytes 1MB
        $image.Path | Should -Be (Join-Path $dir 'piped.img')
    }

    It '-WhatIf creates no file and says what it would create' {
        $path = Join-Path $dir 'whatif.qcow2'
        $lines = Get-KvmWhatIfLine { New-KvmDiskImage $path 2MB -WhatIf }
        $lines | Should -Match ([regex]::Escape($path))
        $lines | Should -Match 'qcow2'
        Test-Path $path | Should -BeFalse
    }

    It 'never overwrites an image: ResourceExists naming the path' {
        New-KvmDiskImage (Join-Path $dir 'a.img') 1MB -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        Assert-KvmError $err -ErrorId DiskImageExists -Command New-KvmDiskImage -Category ResourceExists -TargetObject (Join-Path $dir 'a.img')
        (Get-Item (Join-Path $dir 'a.img')).Length | Should -Be 4MB
    }

    It 'rejects a size that is not a multiple of 512, naming -SizeBytes and the value' -Tag 'Issue9' {
        New-KvmDiskImage (Join-Path $dir 'odd.img') 1000 -ErrorVariable err -ErrorAction SilentlyContinue
        $err.Count | Should -Be 1
        $err[0].FullyQualifiedErrorId | Should -Be 'InvalidValue,KvmPS.Commands.NewKvmDiskImageCommand'
        $err[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
        "$($err[0])" | Should -Match 'SizeBytes'
        $err[0].TargetObject | Should -Not -BeNullOrEmpty -Because 'the error carries the offending input'
        Test-Path (Join-Path $dir 'odd.img') | Should -BeFalse
    }

    It 'rejects -BackingPath with the raw format' {
        New-KvmDiskImage (Join-Path $dir 'rawb.img') -Format Raw -BackingPath (Join-Path $dir 'b.qcow2') -ErrorVariable err -ErrorAction SilentlyContinue
        $err.Count | Should -Be 1
        $err[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
        "$($err[0])" | Should -Match 'BackingPath'
        Test-Path (Join-Path $dir 'rawb.img') | Should -BeFalse
    }

    It 'needs -SizeBytes or -BackingPath' {
        New-KvmDiskImage (Join-Path $dir 'nosize.img') -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
        "$($err[0])" | Should -Match 'SizeBytes'
    }

    It 'shows images as a table that fits 80 columns' {
        $images = Get-ChildItem $dir -Filter '*.img' | Select-Object -First 2 | ForEach-Object {
            New-KvmDiskImage (Join-Path $dir ('view-' + $_.Name)) 1MB
        }
        $lines = Assert-KvmView $images -View Table
        $lines[0] | Should -Match '^Format\s+SizeMB\s+FileSizeKB\s+Path'
        $lines.Count | Should -Be 4
    }

    It 'has full help' {
        Assert-KvmHelp New-KvmDiskImage | Out-Null
    }
}
